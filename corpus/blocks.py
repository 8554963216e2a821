"""Lines → the sentences of a CoNLL or CoNLL-U file: blocks of rows ended by a blank line.

    >>> text = b"# sent_id = 1\\nThe\\tDET\\n\\n\\ncat\\tNOUN\\n"
    >>> lines = read_lines(io.BytesIO(text), 0, -1, 100)
    >>> [(b.offset, [r.data for r in b.rows], [s.data for s in b.skipped])
    ...  for b in sentence_blocks(lines, 100, "conll", keep_skipped=True)]
    [(14, [b'The\\tDET'], [b'# sent_id = 1']), (24, [b'cat\\tNOUN'], [b'', b''])]

A block's rows are the lines of one record; the lines between records (blank lines,
`-DOCSTART-`, comments: `skip_line_rule`) belong to none, and end the record before them. A record over `max_record_bytes`
(its rows joined by '\\n') is one `record_too_long` dead letter, and past the limit its
rows are counted, not kept, so memory holds one record of bounded size.
"""

import io  # pylint: disable=unused-import  (the doctest above)
from typing import Iterator, List, NamedTuple

from corpus import records
from corpus.lines import Line, read_lines  # pylint: disable=unused-import  (read_lines: the doctest)


class Block(NamedTuple):
  offset: int  # of its first row; for a last block of skipped lines only, where they end
  rows: List[Line]  # the record's lines
  too_long: bool  # over max_record_bytes: a record_too_long dead letter (rows past the limit not kept)
  skipped: List[Line]  # with keep_skipped: the lines before it that belong to no record

  def raw(self) -> bytes:
    """The record's rows joined by '\\n': what its dead letter shows, and what is parsed."""
    return b"\n".join(row.data for row in self.rows)


def skip_line_rule(file_format: str):
  """Whether a line belongs to no record: CoNLL-U comments; CoNLL's -DOCSTART- and `# ` lines."""
  return records.is_conllu_comment if file_format == "conllu" else records.is_conll_skip_line


def sentence_blocks(lines: Iterator[Line], max_record_bytes: int, file_format: str,
                    keep_skipped: bool = False) -> Iterator[Block]:
  """The sentences of a CoNLL (`file_format` conll) or CoNLL-U file, in order.

  With `keep_skipped` (to write a file back around its predictions), each block also
  carries the lines before it that belong to no record, every row is kept even past the
  limit, and lines after the last record come as a last block without rows.
  """
  is_skip = skip_line_rule(file_format)
  rows: List[Line] = []
  skipped: List[Line] = []
  size = 0  # bytes of the record so far, rows joined by '\n'
  for line in lines:
    if is_skip(line.data) or (records.is_blank(line.data) and not line.too_long):
      if rows:
        yield Block(rows[0].offset, rows, size > max_record_bytes, skipped)
        rows, skipped, size = [], [], 0
      if keep_skipped:
        skipped.append(line)
      continue
    size += (max_record_bytes + 1 if line.too_long else len(line.data)) + bool(rows)
    if size <= max_record_bytes or not rows or keep_skipped:
      rows.append(line)
  if rows:
    yield Block(rows[0].offset, rows, size > max_record_bytes, skipped)
  elif skipped:
    yield Block(skipped[-1].offset, [], False, skipped)
