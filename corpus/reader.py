"""A raw file → its records in order, one `Item` each, by the pipeline's rules.

What trainer.evaluate and trainer.predict read a raw file with; the pipeline's reader
(pipeline/read.py) reads with the same pieces (`corpus.lines`, `corpus.blocks`,
`parse_block` and `corpus.records`), in byte ranges and batches, so a file gives the same
records, filtered records and dead letters to both.

    >>> f = io.BytesIO(b"The\\tDET\\ncat\\tNOUN\\n\\nlonely\\n")
    >>> [(item.record, item.problem) for item in read_items(f, "conll", "tag", max_record_bytes=100)]
    [(Record(text='', tokens=['The', 'cat'], labels=['DET', 'NOUN'], label=''), ''), (None, 'conll_one_column')]
"""

import io  # pylint: disable=unused-import  (the doctest above)
from typing import Iterator, List, NamedTuple, Optional, Sequence

from corpus import blocks
from corpus import records
from corpus.lines import Line, read_lines

LINE_FORMATS = ("text", "jsonl")  # a record per line
BLOCK_FORMATS = ("conll", "conllu")  # a record per sentence (blank-line separated rows)
# parquet: a record per row (corpus/parquet.py)


class Item(NamedTuple):
  """One record of a raw file, in file order: `record` is None for a bad or filtered one."""
  record: Optional[records.Record]
  problem: str  # "" for a good record, else the BadRecord or Filtered reason
  filtered: bool
  offset: int  # of the record's first byte (past a byte-order mark: a file offset)
  lines: Sequence[Line]  # the record's lines as read (CoNLL: its rows), each with its line end
  skipped: Sequence[Line] = ()  # with keep_skipped: the lines before it that belong to no record
  row: Optional[dict] = None  # Parquet: the row itself (its fields), which has no lines

  @property
  def is_record(self) -> bool:
    """Whether a record was read here (good, filtered or bad), not only lines between records."""
    return bool(self.lines) or self.row is not None


def has_tabs(f) -> bool:
  """Whether a file (read to its end) holds a tab: CoNLL columns split on tabs if it does,
  else on runs of spaces (CoNLL-U always on tabs)."""
  return any(b"\t" in chunk for chunk in iter(lambda: f.read(1 << 20), b""))


def parse_block(rows: Sequence[bytes], file_format: str, task: str, use_tabs: bool,
                label_index: Optional[int], need_labels: bool = True) -> records.Record:
  """A sentence's rows → its record. Without `need_labels` (predicting), a row needs its
  token only: CoNLL's first column (a row of one column is fine), CoNLL-U's FORM."""
  decoded = records.decode(b"\n".join(rows)).split("\n")
  if file_format == "conllu":
    return records.parse_conllu_block(decoded, task if need_labels else "lm", label_index)
  if need_labels:
    return records.parse_conll_block(decoded, use_tabs, task, label_index)
  tokens = [(records.split_conll_row(row, use_tabs) or [""])[0] for row in decoded]
  return records.Record(tokens=records.check_tokens(tokens, "tokens"))


def _item(parse, lines: List[Line], offset: int, skipped=()) -> Item:
  """The Item of `parse()`: its record, or the reason it is filtered or bad."""
  try:
    return Item(parse(), "", False, offset, lines, skipped)
  except records.Filtered as filtered:
    return Item(None, filtered.reason, True, offset, lines, skipped)
  except records.BadRecord as bad:
    return Item(None, bad.reason, False, offset, lines, skipped)


def read_items(f, file_format: str, task: str, *, max_record_bytes: int, start: int = 0,
               need_labels: bool = True, label_column=None, use_tabs: bool = True,
               keep_skipped: bool = False, fields: records.Fields = records.DEFAULT_FIELDS) -> Iterator[Item]:
  """The records of a text, jsonl, conll or conllu file, lazily, in order.

  Args:
    f: the file's stream from `corpus.files.open_for_lines`, at its first record (`start`,
      past a byte-order mark: `corpus.files.skip_bom`).
    file_format: text, jsonl, conll or conllu.
    task: the task whose fields a record needs (lm, tag, classify).
    max_record_bytes: longer records are `record_too_long`.
    start: the offset `f` is at.
    need_labels: tag records need their labels (evaluate); without (predict), tokens only.
    label_column: `--label_column` (CoNLL-U: upos by default; CoNLL: the last column).
    fields: jsonl: the names of the record's fields.
    use_tabs: CoNLL columns split on tabs (`has_tabs`) or on runs of spaces.
    keep_skipped: CoNLL: keep the lines between records, for a writer that writes the
      file back (lines after the last record come as a last Item without lines).
  """
  lines = read_lines(f, start, -1, max_record_bytes)
  if file_format in LINE_FORMATS:
    if file_format == "text":
      parse = lambda raw: records.parse_text_line(raw, task)  # pylint: disable=unnecessary-lambda-assignment
    else:  # tag without need_labels: `tokens` (or `text`) to predict from, no labels
      json_task = "lm" if task == "tag" and not need_labels else task
      parse = lambda raw: records.parse_json_line(raw, json_task, fields)  # pylint: disable=unnecessary-lambda-assignment
    for line in lines:
      if line.too_long:
        yield Item(None, "record_too_long", False, line.offset, [line])
      else:
        yield _item(lambda line=line: parse(line.data), [line], line.offset)
    return
  label_index = records.label_column_index(label_column, file_format)
  for block in blocks.sentence_blocks(lines, max_record_bytes, file_format, keep_skipped=keep_skipped):
    if not block.rows:
      yield Item(None, "", False, block.offset, [], block.skipped)
    elif block.too_long:
      yield Item(None, "record_too_long", False, block.offset, block.rows, block.skipped)
    else:
      rows = [row.data for row in block.rows]
      yield _item(lambda rows=rows: parse_block(rows, file_format, task, use_tabs, label_index, need_labels),
                  block.rows, block.offset, block.skipped)
