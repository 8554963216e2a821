"""Parquet files → records: a row is a record, read a row group at a time.

A row has the fields of a JSON-lines record (`records.parse_object`): `text` or `tokens`;
`labels` (tag) or `label` (classify), under names `records.Fields` may change (Hugging
Face datasets, FineWeb and C4 ship Parquet shards with their own column names). A row
group is the unit of work: the pipeline reads a large file's row groups on many workers.
A record's offset is its row number in the file.

    >>> table = pa.table({"text": ["a b", None, "c"]})
    >>> f = io.BytesIO(); pq.write_table(table, f, row_group_size=2); _ = f.seek(0)
    >>> [(g.index, g.first_row, g.num_rows) for g in row_groups(f)]
    [(0, 0, 2), (1, 2, 1)]
    >>> [(i.record, i.problem, i.offset) for i in read_items(f, "lm")]
    [(Record(text='a b', tokens=(), labels=(), label=''), '', 0), (None, 'missing_text', 1), \
(Record(text='c', tokens=(), labels=(), label=''), '', 2)]
"""

import io  # pylint: disable=unused-import  (the doctest above)
from typing import Iterator, List, NamedTuple, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from corpus import records
from corpus.reader import Item


class RowGroup(NamedTuple):
  index: int
  first_row: int  # the row number, in the file, of its first row
  num_rows: int


def row_groups(f) -> List[RowGroup]:
  """The row groups of a Parquet file (from its footer)."""
  metadata = pq.ParquetFile(f).metadata
  groups, first = [], 0
  for index in range(metadata.num_row_groups):
    rows = metadata.row_group(index).num_rows
    groups.append(RowGroup(index, first, rows))
    first += rows
  return groups


def needed_fields(task: str, fields: records.Fields = records.DEFAULT_FIELDS, need_labels: bool = True) -> List[str]:
  """The columns a record of `task` may use."""
  names = [fields.text, fields.tokens]
  if need_labels and task == "tag":
    names.append(fields.labels)
  elif need_labels and task == "classify":
    names.append(fields.label)
  return names


def missing_columns(schema: pa.Schema, task: str, fields: records.Fields = records.DEFAULT_FIELDS) -> Optional[str]:
  """What a file's schema lacks for `task`'s records ("" when nothing), e.g. "text or tokens"."""
  present = set(schema.names)
  wanted = {"lm": [[fields.text, fields.tokens]], "tag": [[fields.tokens], [fields.labels]],
            "classify": [[fields.text, fields.tokens], [fields.label]]}[task]
  lacking = [" or ".join(names) for names in wanted if not present & set(names)]
  return ", ".join(lacking)


def read_rows(f, group: int, columns: Optional[List[str]] = None) -> List[dict]:
  """A row group's rows as dicts (of the `columns` the file has; None: all of them)."""
  parquet_file = pq.ParquetFile(f)
  if columns is not None:
    columns = [name for name in columns if name in parquet_file.schema_arrow.names]
  return parquet_file.read_row_group(group, columns=columns).to_pylist()


def parse_row(row: dict, task: str, fields: records.Fields = records.DEFAULT_FIELDS) -> records.Record:
  return records.parse_object(row, task, fields)


def read_items(f, task: str, fields: records.Fields = records.DEFAULT_FIELDS, need_labels: bool = True,
               all_columns: bool = False) -> Iterator[Item]:
  """Every row of a Parquet file as an Item (`row` holds the row itself), row group by row
  group. `all_columns`: read every column (to write the rows back with predictions)."""
  parse_task = task if need_labels or task != "tag" else "lm"  # tokens to predict from, no labels
  columns = None if all_columns else needed_fields(task, fields, need_labels)
  for group in row_groups(f):
    for number, row in enumerate(read_rows(f, group.index, columns), group.first_row):
      try:
        yield Item(parse_row(row, parse_task, fields), "", False, number, (), row=row)
      except records.Filtered as filtered:
        yield Item(None, filtered.reason, True, number, (), row=row)
      except records.BadRecord as bad:
        yield Item(None, bad.reason, False, number, (), row=row)
