"""Bytes → lines: input files, byte ranges, and the one line splitter with its fast path.

A line ends at '\\n', '\\r\\n' or a lone '\\r' (mixed endings in one file are fine). An
uncompressed text or JSON-lines file is read in byte ranges, so one large file is read
by many workers; a line belongs to the range its first byte falls in, as in Beam's
textio, and ranges are cut at '\\n' only. `read_lines` splits any file-like object this
way in bounded memory; `plain_text_lines` is its fast path for a block of plain lines.

Files are opened through `open_for_lines`, which makes every input look the same to the
splitter: compressed or not, any `--encoding` (transcoded to UTF-8); `seek_to_range`
skips a UTF-8 byte-order mark at the start.

    >>> [tuple(line) for line in read_lines(io.BytesIO(b"ab\\r\\ncd\\ref\\n"), 0, -1, 10)]
    [(0, b'ab', False), (4, b'cd', False), (7, b'ef', False)]
"""

import codecs
import io
import itertools
import re
from typing import Iterator, List, NamedTuple, Optional, Tuple

import numpy as np
import pyarrow as pa
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

import records

# Uncompressed inputs are split into ranges of this many bytes, so that workers share even
# one file evenly (a local runner hands a stage's elements out round-robin).
RANGE_BYTES = 4 << 20
TEXT_BLOCK_BYTES = 8 << 20  # plain text is read in blocks of about this many bytes
TEXT_BLOCK_MIN_BYTES = 64 << 10  # a block with odd lines is halved down to this, then read line by line
TOO_LONG_PREFIX_BYTES = 10_000  # of a line over the limit, this much is kept (for errors/)
UTF8_BOM = codecs.BOM_UTF8
UTF8 = "utf-8"

# A line that bytes.strip() leaves non-empty may still be blank to str.strip(), which
# also strips U+001C-U+001F and the Unicode spaces, whose UTF-8 starts with 0xC2, 0xE1,
# 0xE2 or 0xE3. Such a line starts, after any ASCII whitespace, with one of those bytes;
# this finds the '\n' before each line that does.
_MAYBE_UNICODE_BLANK = re.compile(rb"\n[ \t\x0b\x0c]*[\x1c-\x1f\xc2\xe1-\xe3]")


class InputFile(NamedTuple):
  path: str
  size: int  # at listing time: a file found shorter when read is an error, not a short count


class FileRange(NamedTuple):
  path: str
  start: int
  end: int  # exclusive; -1 means "to the end of the file"
  listed_size: int = -1  # the file's size when listed; -1: unknown (not checked)


class Line(NamedTuple):
  offset: int  # of the line's first byte
  data: bytes  # without its line end; for a line over the limit, its first bytes only
  too_long: bool


def _line(offset: int, data: bytes, too_long: bool) -> Line:
  """Line(offset, data, too_long), without the NamedTuple's Python-level __new__ (per line)."""
  return tuple.__new__(Line, (offset, data, too_long))


class InputChangedError(Exception):
  """An input file shrank or disappeared between listing and reading."""


def is_utf8(encoding: str) -> bool:
  """Whether `encoding` names plain UTF-8 (read as it is, on the fast path)."""
  return codecs.lookup(encoding).name == UTF8


def split_into_ranges(input_file: InputFile, splittable: bool = True) -> Iterator[FileRange]:
  """Byte ranges of a file; compressed files, and any file of a format that is not
  `splittable` (CoNLL: a record spans lines; another encoding: decoded from the start),
  stay whole."""
  compressed = CompressionTypes.detect_compression_type(input_file.path) != CompressionTypes.UNCOMPRESSED
  if compressed or not splittable or input_file.size <= RANGE_BYTES:
    yield FileRange(input_file.path, 0, -1, input_file.size)
    return
  for start in range(0, input_file.size, RANGE_BYTES):
    yield FileRange(input_file.path, start, min(start + RANGE_BYTES, input_file.size), input_file.size)


# --- opening a file --------------------------------------------------------------------


class _RawStream(io.RawIOBase):
  """Adapts a stream with only read(n) (Beam's CompressedFile, a transcoder) to io.BufferedReader."""

  def __init__(self, stream):
    super().__init__()
    self._stream = stream

  def readable(self):
    return True

  def readinto(self, buffer):
    data = self._stream.read(len(buffer))
    buffer[:len(data)] = data
    return len(data)

  def close(self):
    self._stream.close()
    super().close()


def _escape_undecodable(error: UnicodeDecodeError):
  """Decodes each byte that does not decode as a lone surrogate, which UTF-8 cannot hold,
  so the line holding it becomes an `undecodable` dead letter rather than being altered."""
  return "".join(chr(0xDC00 + byte) for byte in error.object[error.start:error.end]), error.end


codecs.register_error("pipeline_undecodable", _escape_undecodable)


class _Transcoder:
  """read(n) of a file in another encoding, as UTF-8 (an incremental decoder: bounded memory)."""

  def __init__(self, stream, encoding: str):
    self._stream = stream
    self._decoder = codecs.getincrementaldecoder(encoding)(errors="pipeline_undecodable")
    self._pending = b""

  def read(self, size: int) -> bytes:
    while len(self._pending) < size:
      raw = self._stream.read(1 << 20)
      text = self._decoder.decode(raw, final=not raw)
      self._pending += text.encode(UTF8, errors="surrogatepass")
      if not raw:
        break
    data, self._pending = self._pending[:size], self._pending[size:]
    return data

  def close(self):
    self._stream.close()


def _open(path: str, listed_size: int):
  """FileSystems.open, compressed or not; a file gone or shorter than listed is an error."""
  compression = CompressionTypes.detect_compression_type(path)
  try:
    f = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
  except Exception as error:  # Beam raises BeamIOError, or the file system's own error
    raise InputChangedError(f"{path}: listed as an input, but it can no longer be opened ({error})") from None
  if listed_size >= 0:
    size = f.seek(0, io.SEEK_END)
    f.seek(0)
    if size < listed_size:
      f.close()
      raise InputChangedError(f"{path}: {listed_size} bytes when listed, {size} when read; "
                              "it changed while the job ran")
  if compression == CompressionTypes.UNCOMPRESSED:
    return f
  f.close()
  return _RawStream(FileSystems.open(path, compression_type=compression))


def open_for_lines(path: str, encoding: str = UTF8, listed_size: int = -1):
  """A binary file of UTF-8 lines whose readline(size) works, for `read_lines`.

  Compressed files (.gz, .bz2, ...) are decompressed, files in another `encoding`
  transcoded to UTF-8 (only a whole file can be: it is read from its start). The caller
  moves to its range, past a byte-order mark, with `seek_to_range`.
  """
  f = _open(path, listed_size)
  if is_utf8(encoding):
    return f if not isinstance(f, _RawStream) else io.BufferedReader(f, 1 << 20)
  if isinstance(f, _RawStream):
    f = io.BufferedReader(f, 1 << 20)
  return io.BufferedReader(_RawStream(_Transcoder(f, encoding)), 1 << 20)


def skip_bom(f) -> int:
  """Reads past a UTF-8 byte-order mark at the current position (a file's start); returns
  the bytes skipped, 0 or 3. Works on streams that cannot seek back (compressed)."""
  if hasattr(f, "peek"):
    if f.peek(len(UTF8_BOM))[:len(UTF8_BOM)] != UTF8_BOM:
      return 0
    f.read(len(UTF8_BOM))
    return len(UTF8_BOM)
  if f.read(len(UTF8_BOM)) == UTF8_BOM:
    return len(UTF8_BOM)
  f.seek(0)
  return 0


# --- the line splitter ---------------------------------------------------------------


def _skip_line(f) -> int:
  """Reads to the end of the current line in bounded pieces; returns the bytes read."""
  skipped, piece = 0, b""
  while not piece.endswith(b"\n"):
    piece = f.readline(1 << 20)
    if not piece:
      break
    skipped += len(piece)
  return skipped


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

  def finish(self, next_offset: int) -> Line:
    """The line so far; the next one starts at `next_offset`."""
    data = bytes(self.data[:TOO_LONG_PREFIX_BYTES] if self.too_long else self.data)
    line = _line(self.offset, data, self.too_long)
    self.offset, self.data, self.too_long = next_offset, bytearray(), False
    return line


def seek_to_range(f, file_range: FileRange) -> int:
  """Moves `f` to the first line that starts in the range; returns its offset.

  At 0 that is past a UTF-8 byte-order mark, if any; else past the rest of the line
  that started before the range (the range before reads it).
  """
  if file_range.start == 0:
    return skip_bom(f)
  f.seek(file_range.start - 1)
  return file_range.start - 1 + _skip_line(f)


def read_lines(f, position: int, end: int, max_record_bytes: int) -> Iterator[Line]:
  """The lines from `position` (where `f` is, at a line start) whose physical line
  ('\\n'-ended) starts before `end`; `end` -1: to the end of the file.

  The file is read with readline(`max_record_bytes` + 2), so memory stays bounded
  whatever the line lengths; a piece ends at '\\n', at that size or at the end of the
  file. A lone '\\r' inside a piece ends a line too, and a '\\r' that ends a piece ends one
  unless the next piece starts with '\\n' (then it was a '\\r\\n'). A line longer than
  `max_record_bytes` comes with too_long set and its first bytes only.
  """
  pending = _PendingLine(position, max_record_bytes)
  new_tuple = tuple.__new__  # Line(...) without the NamedTuple's Python-level __new__, per line
  after_cr = False  # the last piece ended in '\r': a '\n' next completes a '\r\n'
  while True:
    if 0 <= end <= position and not after_cr and pending.empty():  # at a line start, past the range
      return
    piece = f.readline(max_record_bytes + 2)
    if not piece:
      if not pending.empty():
        yield pending.finish(position)
      return
    if after_cr:
      after_cr = False
      if piece.startswith(b"\n"):  # the '\n' of a '\r\n' whose '\r' ended the last line
        piece, position = piece[1:], position + 1
        if not piece:
          continue
    ended = piece.endswith(b"\n")
    body = piece[:-1] if ended else piece
    if ended and body.endswith(b"\r"):
      body = body[:-1]
    if ended and b"\r" not in body and not pending.data and not pending.too_long:  # the common case:
      too_long = len(body) > max_record_bytes                                       # one whole line
      yield new_tuple(Line, (position, body[:TOO_LONG_PREFIX_BYTES] if too_long else body, too_long))
      position += len(piece)
      continue
    if pending.empty():  # a line starts here
      pending.offset = position
    parts = body.split(b"\r")  # all but the last ended by a lone '\r'
    for part in parts[:-1]:
      pending.take(part)
      position += len(part) + 1
      yield pending.finish(position)
    pending.take(parts[-1])
    position += len(parts[-1]) + (len(piece) - len(body))  # and the piece's line end, if any
    if ended:
      yield pending.finish(position)
    else:
      after_cr = len(parts) > 1 and not parts[-1]


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
