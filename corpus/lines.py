"""Bytes → lines: the one line splitter, with its fast path for blocks of plain lines.

A line ends at '\\n', '\\r\\n' or a lone '\\r' (mixed endings in one file are fine).
`read_lines` splits any file-like object this way in bounded memory, each line with its
offset and its line end, so the lines and their ends give back the file's bytes;
`plain_text_lines` is its fast path for a block of plain lines. A line belongs to the
range its first byte falls in, as in Beam's textio.

No Beam and no TensorFlow: the pipeline's reader and trainer.evaluate/trainer.predict
split raw files with this same code.

    >>> [tuple(line) for line in read_lines(io.BytesIO(b"ab\\r\\ncd\\ref\\n"), 0, -1, 10)]
    [(0, b'ab', False, b'\\r\\n'), (4, b'cd', False, b'\\r'), (7, b'ef', False, b'\\n')]
"""

import io  # pylint: disable=unused-import  (the doctest above)
import itertools
import re
from typing import Iterator, List, NamedTuple, Optional, Tuple

import numpy as np
import pyarrow as pa

from corpus import records

TEXT_BLOCK_BYTES = 8 << 20  # plain text is read in blocks of about this many bytes
TEXT_BLOCK_MIN_BYTES = 64 << 10  # a block with odd lines is halved down to this, then read line by line
TOO_LONG_PREFIX_BYTES = 10_000  # of a line over the limit, this much is kept (for errors/)

# A line that bytes.strip() leaves non-empty may still be blank to str.strip(), which
# also strips U+001C-U+001F and the Unicode spaces, whose UTF-8 starts with 0xC2, 0xE1,
# 0xE2 or 0xE3. Such a line starts, after any ASCII whitespace, with one of those bytes;
# this finds the '\n' before each line that does.
_MAYBE_UNICODE_BLANK = re.compile(rb"\n[ \t\x0b\x0c]*[\x1c-\x1f\xc2\xe1-\xe3]")


class Line(NamedTuple):
  offset: int  # of the line's first byte
  data: bytes  # without its line end; for a line over the limit, its first bytes only
  too_long: bool
  end: bytes = b""  # its line end: b"\n", b"\r\n", b"\r", or b"" at the end of the file


# --- the line splitter ---------------------------------------------------------------


class _PendingLine:
  """The line being put together from readline pieces: its offset and at most `limit` + 1
  bytes of it, enough to know it is too long."""

  def __init__(self, offset: int, limit: int):
    self.offset, self.limit = offset, limit
    self.data, self.too_long = bytearray(), False

  def empty(self) -> bool:
    return not self.data and not self.too_long

  def take(self, part: bytes) -> None:
    if not self.too_long:
      self.data += part
      self.too_long = len(self.data) > self.limit

  def finish(self, next_offset: int, end: bytes) -> Line:
    """The line so far, ended by `end`; the next one starts at `next_offset`."""
    data = bytes(self.data[:TOO_LONG_PREFIX_BYTES] if self.too_long else self.data)
    line = tuple.__new__(Line, (self.offset, data, self.too_long, end))
    self.offset, self.data, self.too_long = next_offset, bytearray(), False
    return line


def skip_line(f) -> int:
  """Reads to the end of the current line in bounded pieces; returns the bytes read."""
  skipped, piece = 0, b""
  while not piece.endswith(b"\n"):
    piece = f.readline(1 << 20)
    if not piece:
      break
    skipped += len(piece)
  return skipped


def read_lines(f, position: int, end: int, max_record_bytes: int) -> Iterator[Line]:
  """The lines from `position` (where `f` is, at a line start) whose physical line
  ('\\n'-ended) starts before `end`; `end` -1: to the end of the file.

  The file is read with readline(`max_record_bytes` + 2), so memory stays bounded
  whatever the line lengths; a piece ends at '\\n', at that size or at the end of the
  file. A lone '\\r' inside a piece ends a line too; a '\\r' that ends a piece ends its
  line once the next piece shows whether a '\\n' follows (then it was a '\\r\\n'). A
  line longer than `max_record_bytes` comes with too_long set and its first bytes only.
  Each line comes with its line end, so the lines' data and ends are the file's bytes.
  """
  pending = _PendingLine(position, max_record_bytes)
  new_tuple = tuple.__new__  # Line(...) without the NamedTuple's Python-level __new__, per line
  held_cr = False  # the last piece ended in '\r': its line (in `pending`) waits for the next piece
  while True:
    if 0 <= end <= position and not held_cr and pending.empty():  # at a line start, past the range
      return
    piece = f.readline(max_record_bytes + 2)
    if held_cr:
      held_cr = False
      crlf = piece.startswith(b"\n")
      if crlf:
        piece, position = piece[1:], position + 1
      yield pending.finish(position, b"\r\n" if crlf else b"\r")
      if crlf and not piece:
        continue
    if not piece:
      if not pending.empty():
        yield pending.finish(position, b"")
      return
    ended = piece.endswith(b"\n")
    body = piece[:-1] if ended else piece
    if ended and body.endswith(b"\r"):
      body = body[:-1]
    if ended and b"\r" not in body and pending.empty():  # the common case: one whole line
      too_long = len(body) > max_record_bytes
      yield new_tuple(Line, (position, body[:TOO_LONG_PREFIX_BYTES] if too_long else body, too_long,
                             piece[len(body):]))
      position += len(piece)
      continue
    if pending.empty():  # a line starts here
      pending.offset = position
    parts = body.split(b"\r")  # all but the last ended by a lone '\r'
    held_cr = not ended and len(parts) > 1 and not parts[-1]  # the piece ends in that '\r'
    for part in parts[:-2] if held_cr else parts[:-1]:
      pending.take(part)
      position += len(part) + 1
      yield pending.finish(position, b"\r")
    if held_cr:
      pending.take(parts[-2])
      position += len(parts[-2]) + 1
      continue
    pending.take(parts[-1])
    position += len(parts[-1]) + (len(piece) - len(body))  # and the piece's line end, if any
    if ended:
      yield pending.finish(position, piece[len(body):])


class Rest:
  """The rest of a file whose next bytes, `head` (no '\\n' in it), were already read.

  For `read_lines`, which reads with readline(size): pieces come as they would from the
  file itself at the start of `head`, and no seek is needed (compressed files have none).
  """

  def __init__(self, head: bytes, f):
    self._head, self._file = head, f
    self.bytes_read = 0

  def readline(self, size: int) -> bytes:
    piece = self._head[self.bytes_read:self.bytes_read + size]
    if len(piece) < size:
      piece += self._file.readline(size - len(piece))
    self.bytes_read += len(piece)
    return piece


# --- the fast path: a block of plain lines ---------------------------------------------


def is_valid_utf8(data: bytes) -> bool:
  """Whether `data` is well-formed UTF-8, as bytes.decode("utf-8") has it (no overlong
  forms, surrogates or code points past U+10FFFF), checked by Arrow, much faster."""
  offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int64))
  array = pa.LargeStringArray.from_buffers(1, offsets, pa.py_buffer(data))
  try:
    array.validate(full=True)
  except pa.ArrowInvalid:
    return False
  return True


def _unicode_blank_lines(block: bytes) -> List[int]:
  """Indices of the lines that records.is_blank finds blank, among them all that
  bytes.strip() does not (U+00A0, U+3000, U+001F, ...), in a block of whole lines of
  valid UTF-8."""
  candidates = [0] + [match.start() + 1 for match in _MAYBE_UNICODE_BLANK.finditer(block)]
  blank, index, counted = [], 0, 0
  for start in candidates:  # the first line has no '\n' before it: always a candidate
    end = block.index(b"\n", start)
    if records.is_blank(block[start:end]):
      index += block.count(b"\n", counted, start)  # line numbers, each byte counted once
      counted = start
      blank.append(index)
  return blank


def plain_text_lines(block: bytes, max_record_bytes: int) -> Optional[Tuple[List[bytes], int]]:
  """(good lines, number of blank lines) of a block of plain lines; None for any other.

  `block` holds whole lines, each ended by '\\n' or '\\r\\n'. They are plain if there is
  no other CR (a line end of its own), no NUL, the UTF-8 is valid and no line is longer
  than `max_record_bytes`. Then `read_lines` and records.parse_text_line would keep each
  line or filter it as blank (records.is_blank), and this finds the same with a few
  whole-block operations.
  """
  if b"\r" in block:
    if block.count(b"\r") != block.count(b"\r\n"):
      return None
    block = block.replace(b"\r\n", b"\n")  # CRLF line ends are plain too
  if b"\x00" in block or not is_valid_utf8(block):
    return None  # valid as a whole ⇔ every line is: '\n' is never inside a character
  lines = block.split(b"\n")
  del lines[-1]  # after the last '\n'
  if max(map(len, lines)) > max_record_bytes:
    return None
  keep = list(map(bytes.strip, lines))  # b"", false, for a line of ASCII whitespace
  for index in _unicode_blank_lines(block):
    keep[index] = b""
  good = list(itertools.compress(lines, keep))
  return good, len(lines) - len(good)


def middle_line_start(block: bytes) -> int:
  """The start of a line near the middle of a block of whole lines; 0 if it has one line.

      >>> middle_line_start(b"aaaa\\nbbbb\\n")
      5
  """
  half = len(block) // 2
  middle = block.find(b"\n", half) + 1
  if middle == len(block):
    middle = block.rfind(b"\n", 0, half) + 1
  return middle
