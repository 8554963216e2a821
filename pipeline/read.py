"""ReadCorpus: raw files → batches of records (pyarrow RecordBatches), dead letters, counts.

Records leave this stage in batches, never one Beam element per line: per-element
overhead, not parsing, is what makes a naive Beam pipeline slow. Uncompressed text and
JSON-lines files are read in byte ranges, so one large file is read by many workers
(a line belongs to the range its first byte falls in, as in Beam's textio). Compressed
files and CoNLL files are read by one worker each, a block at a time.

Plain text, the common and large case, is read a block of lines at a time: a block in
which every line is plain (ended by LF or CRLF, no other CR, no NUL, valid UTF-8, within
the length limit) is split, filtered and hashed with a few whole-block operations. A
block with other lines is halved until the odd lines are in small blocks, which go line
by line through the same code as JSON lines; both ways give the same records, counts
and dead letters.

Every record read is counted exactly once, as one of: a good record (it goes on), a
filtered record (empty or whitespace-only) or a dead letter (malformed, with a reason).
"""

import hashlib
import io
import itertools
import re
from typing import Iterator, List, NamedTuple, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

import contract
import records
from pipeline import counts
# The record rules, re-exported: the reader applies them, records.py owns them.
from records import BadRecord, Filtered, Record, content_key, parse_json_line, parse_text_line  # pylint: disable=unused-import

# Uncompressed inputs are split into ranges of this many bytes, so that workers share even
# one file evenly (a local runner hands a stage's elements out round-robin).
RANGE_BYTES = 4 << 20
BATCH_SIZE = 4096  # records per RecordBatch
TEXT_BLOCK_BYTES = 8 << 20  # plain text is read in blocks of about this many bytes
TEXT_BLOCK_MIN_BYTES = 64 << 10  # a block with odd lines is halved down to this, then read line by line
DEAD_LETTER_RECORD_CHARS = 10_000  # keep at most this much of a bad record in errors/

# A line that bytes.strip() leaves non-empty may still be blank to str.strip(), which
# also strips U+001C-U+001F and the Unicode spaces, whose UTF-8 starts with 0xC2, 0xE1,
# 0xE2 or 0xE3. Such a line starts, after any ASCII whitespace, with one of those bytes;
# this finds the '\n' before each line that does.
_MAYBE_UNICODE_BLANK = re.compile(rb"\n[ \t\x0b\x0c]*[\x1c-\x1f\xc2\xe1-\xe3]")

_LIST_OF_BYTES = pa.large_list(pa.large_binary())
SPLIT_KEY = "split_key"  # uint64 column: stable hash of the record's content


class InputFile(NamedTuple):
  path: str
  size: int


class FileRange(NamedTuple):
  path: str
  start: int
  end: int  # exclusive; -1 means "to the end of the file"



def arrow_schema(task: str) -> pa.Schema:
  """Schema of the RecordBatches this stage emits (every column a list, as TFXIO expects)."""
  fields = [(name, _LIST_OF_BYTES) for name in contract.raw_columns(task)]
  return pa.schema(fields + [(SPLIT_KEY, pa.uint64())])


# What records.content_key hashes after the text of a record that has only text: the
# separators before its (empty) tokens, labels and label.
_TEXT_ONLY_KEY_SUFFIX = b"\x1e" + b"\x1e" + b"\x1e"


def text_content_keys(lines: Sequence[bytes]) -> np.ndarray:
  """content_key(Record(text=line.decode("utf-8"))) of each UTF-8 line, as uint64s.

  The same hash, computed from the bytes without building a Record or re-encoding text.
  """
  empty = hashlib.blake2b(digest_size=8)
  digests = []
  for line in lines:
    digest = empty.copy()  # cheaper than a new blake2b with its parameters
    digest.update(line)
    digest.update(_TEXT_ONLY_KEY_SUFFIX)
    digests.append(digest.digest())
  return np.frombuffer(b"".join(digests), dtype="<u8").astype(np.uint64, copy=False)


def _utf8_values(strings: List[str]) -> pa.Array:
  """Strings → large_binary of their UTF-8, encoded by Arrow rather than one str.encode each."""
  return pa.array(strings, pa.large_string()).cast(pa.large_binary())


def _list_column(rows: List[Sequence[str]]) -> pa.Array:
  """Lists of strings → a large_list<large_binary> column, built from flat values + offsets."""
  offsets = np.zeros(len(rows) + 1, dtype=np.int64)
  np.cumsum(np.fromiter(map(len, rows), dtype=np.int64, count=len(rows)), out=offsets[1:])
  values = _utf8_values(list(itertools.chain.from_iterable(rows)))
  return pa.LargeListArray.from_arrays(pa.array(offsets), values)


def _empty_list_column(num_rows: int) -> pa.Array:
  """_list_column of `num_rows` empty lists."""
  offsets = pa.array(np.zeros(num_rows + 1, dtype=np.int64))
  return pa.LargeListArray.from_arrays(offsets, pa.array([], pa.large_binary()))


def _scalar_column(values: pa.Array) -> pa.Array:
  """One large_binary value per row → a large_list<large_binary> column with lists of one."""
  offsets = pa.array(np.arange(len(values) + 1, dtype=np.int64))
  return pa.LargeListArray.from_arrays(offsets, values)


def to_record_batch(records: List[Record], task: str) -> pa.RecordBatch:
  builders = {
      "text": lambda: _scalar_column(_utf8_values([r.text for r in records])),
      "tokens": lambda: _list_column([r.tokens for r in records]),
      "labels": lambda: _list_column([r.labels for r in records]),
      "label": lambda: _scalar_column(_utf8_values([r.label for r in records])),
  }
  arrays = [builders[name]() for name in contract.raw_columns(task)]
  arrays.append(pa.array(np.fromiter((content_key(r) for r in records), dtype=np.uint64, count=len(records))))
  return pa.record_batch(arrays, schema=arrow_schema(task))


def text_record_batch(lines: List[bytes]) -> pa.RecordBatch:
  """to_record_batch of text records (task lm), built from the lines' UTF-8 as it is."""
  builders = {
      "text": lambda: _scalar_column(pa.array(lines, pa.large_binary())),
      "tokens": lambda: _empty_list_column(len(lines)),
  }
  arrays = [builders[name]() for name in contract.raw_columns("lm")]
  arrays.append(pa.array(text_content_keys(lines)))
  return pa.record_batch(arrays, schema=arrow_schema("lm"))


# --- parsing one record --------------------------------------------------------------



def check_text_line(raw: bytes, task: str) -> bytes:
  """parse_text_line, but returns the line's bytes: text_record_batch takes them as they are."""
  parse_text_line(raw, task)
  return raw


def _is_utf8(data: bytes) -> bool:
  """Whether `data` is well-formed UTF-8, as bytes.decode("utf-8") has it (no overlong
  forms, surrogates or code points past U+10FFFF), checked by Arrow ~30x faster."""
  offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int64))
  array = pa.LargeStringArray.from_buffers(1, offsets, pa.py_buffer(data))
  try:
    array.validate(full=True)
  except pa.ArrowInvalid:
    return False
  return True


def _unicode_blank_lines(block: bytes) -> List[int]:
  """Indices of the lines that str.strip() finds blank, among them all that bytes.strip()
  does not (U+00A0, U+3000, U+001F, ...), in a block of whole lines of valid UTF-8."""
  candidates = [0] + [match.start() + 1 for match in _MAYBE_UNICODE_BLANK.finditer(block)]
  blank, index, counted = [], 0, 0
  for start in candidates:  # the first line has no '\n' before it: always a candidate
    end = block.index(b"\n", start)
    if block[start:end].decode("utf-8").isspace():
      index += block.count(b"\n", counted, start)  # line numbers, each byte counted once
      counted = start
      blank.append(index)
  return blank


def plain_text_lines(block: bytes, max_record_bytes: int) -> Optional[Tuple[List[bytes], int]]:
  """(good lines, number of blank lines) of a block of plain lines; None for any other.

  `block` holds whole lines, each ended by '\\n' or '\\r\\n'. They are plain if there is
  no other CR (a line end of its own), no NUL, the UTF-8 is valid and no line is longer
  than `max_record_bytes`. Then check_text_line would keep each line or filter it as
  "empty", and this finds the same with a few whole-block operations.
  """
  if b"\r" in block:
    if block.count(b"\r") != block.count(b"\r\n"):
      return None
    block = block.replace(b"\r\n", b"\n")  # CRLF line ends are plain too
  if b"\x00" in block or not _is_utf8(block):
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



# --- the DoFns -----------------------------------------------------------------------


def split_into_ranges(input_file: InputFile, splittable: bool = True) -> Iterator[FileRange]:
  """Byte ranges of a file; compressed files, and any file of a format that is not
  `splittable` (CoNLL: a record spans lines), stay whole."""
  compressed = CompressionTypes.detect_compression_type(input_file.path) != CompressionTypes.UNCOMPRESSED
  if compressed or not splittable or input_file.size <= RANGE_BYTES:
    yield FileRange(input_file.path, 0, -1)
    return
  for start in range(0, input_file.size, RANGE_BYTES):
    yield FileRange(input_file.path, start, min(start + RANGE_BYTES, input_file.size))


class _Batcher:
  """Collects good records of one file into RecordBatches; counts everything else.

  Records are `Record`s for `to_record_batch`, or for text the lines' bytes for
  `text_record_batch`. Batches hold BATCH_SIZE records, the last one of a range fewer.
  With `report` False (a second read of the same files), nothing is counted.
  """

  def __init__(self, task: str, path: str, text_lines: bool = False, report: bool = True):
    self.task, self.path = task, path
    self.text_lines = text_lines
    self.report = report
    self.records: List = []
    self.read = 0
    self.filtered = {}

  def add(self, parse, raw: bytes, offset: int, *args):
    """Parses one raw record; yields a dead letter or, when full, a RecordBatch."""
    self.read += 1
    try:
      self.records.append(parse(raw, *args))
    except Filtered as filtered:
      self.count_filtered(filtered.reason)
    except BadRecord as bad:
      yield beam.pvalue.TaggedOutput(counts.DEAD_LETTER, dead_letter(bad.reason, self.path, offset, raw))
    if len(self.records) >= BATCH_SIZE:
      yield from self.flush()

  def add_good(self, records: List):
    """Adds records already parsed and checked (counted by the caller); yields full batches."""
    self.records.extend(records)
    full = len(self.records) - len(self.records) % BATCH_SIZE
    for start in range(0, full, BATCH_SIZE):
      yield self._to_batch(self.records[start:start + BATCH_SIZE])
    del self.records[:full]

  def count_filtered(self, reason: str, n: int = 1):
    self.filtered[reason] = self.filtered.get(reason, 0) + n

  def _to_batch(self, records: List) -> pa.RecordBatch:
    return text_record_batch(records) if self.text_lines else to_record_batch(records, self.task)

  def flush(self):
    if self.records:
      yield self._to_batch(self.records)
      self.records = []

  def finish(self):
    yield from self.flush()
    if not self.report:
      return
    counters = [(counts.READ, self.read)] + [
        (counts.key(counts.FILTERED, reason), n) for reason, n in self.filtered.items()]
    for name, n in counters:
      counts.inc(name, n)
      yield beam.pvalue.TaggedOutput(counts.COUNTS, (name, n))


def dead_letter(reason: str, path: str, offset: int, raw) -> dict:
  if isinstance(raw, bytes):
    raw = raw.decode("utf-8", errors="replace")
  return {"reason": reason, "file": path, "offset": offset, "record": raw[:DEAD_LETTER_RECORD_CHARS]}


def _skip_line(f, line: bytes) -> int:
  """Reads to the end of the current line in bounded pieces; returns the bytes read."""
  skipped = 0
  while not line.endswith(b"\n"):
    line = f.readline(1 << 20)
    if not line:
      break
    skipped += len(line)
  return skipped


def _lines(f, start: int, end: int, max_record_bytes: int) -> Iterator[tuple]:
  """(offset, line, too_long) for the lines whose physical line starts in [start, end).

  Line ends are '\\n', '\\r\\n' or a lone '\\r' (mixed endings in one file are fine). Ranges
  are cut at '\\n' only, so a run of lone-'\\r' lines is read by the range it starts in. The
  file is read in pieces of at most `max_record_bytes + 2` bytes, so memory stays bounded
  whatever the line lengths. A line (without its end) longer than `max_record_bytes` comes
  as (offset, None, its first bytes); any other as (offset, bytes, None).
  """
  position = start
  if start > 0:
    f.seek(start - 1)
    position = start - 1 + _skip_line(f, b"")  # finish the line that started before us
  record, record_offset, too_long = bytearray(), position, False

  def take(part: bytes) -> None:
    nonlocal too_long
    if not too_long:
      record.extend(part)
      too_long = len(record) > max_record_bytes

  def finish(next_offset: int) -> tuple:
    nonlocal record, record_offset, too_long
    out = (record_offset, None, bytes(record[:DEAD_LETTER_RECORD_CHARS])) if too_long else (
        record_offset, bytes(record), None)
    record, record_offset, too_long = bytearray(), next_offset, False
    return out

  after_cr = False  # the last piece ended in '\\r': a '\\n' next completes a '\\r\\n'
  at_line_start = True  # between physical lines: where a range may stop
  while True:
    if at_line_start and 0 <= end <= position:
      return
    piece = f.readline(max_record_bytes + 2)
    if not piece:
      if record or too_long:
        yield finish(position)
      return
    if after_cr and piece.startswith(b"\n"):
      piece, position, record_offset = piece[1:], position + 1, position + 1
      after_cr = False
      if not piece:
        at_line_start = True
        continue
    after_cr = False
    at_line_start = piece.endswith(b"\n")
    body = piece[:-1] if at_line_start else piece
    if at_line_start and body.endswith(b"\r"):
      body = body[:-1]  # a '\\r\\n' end
    if at_line_start and not record and not too_long and b"\r" not in body:  # the common case
      if len(body) > max_record_bytes:
        yield position, None, body[:DEAD_LETTER_RECORD_CHARS]
      else:
        yield position, body, None
      position += len(piece)
      record_offset = position
      continue
    parts = body.split(b"\r")
    part_offset = position
    for part in parts[:-1]:  # each ended by a lone '\\r'
      take(part)
      part_offset += len(part) + 1
      yield finish(part_offset)
    take(parts[-1])
    if at_line_start:
      position += len(piece)
      yield finish(position)
    else:
      position += len(piece)
      after_cr = len(parts) > 1 and not parts[-1]


class _RawStream(io.RawIOBase):
  """Adapts Beam's CompressedFile (whose readline takes no size) to io.BufferedReader."""

  def __init__(self, compressed_file):
    super().__init__()
    self._file = compressed_file

  def readable(self):
    return True

  def readinto(self, buffer):
    data = self._file.read(len(buffer))
    buffer[:len(data)] = data
    return len(data)


def open_for_lines(path: str):
  """A binary file whose readline(size) works, compressed (.gz, .bz2, ...) or not."""
  compression = CompressionTypes.detect_compression_type(path)
  if compression == CompressionTypes.UNCOMPRESSED:
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
  return io.BufferedReader(_RawStream(FileSystems.open(path, compression_type=compression)), 1 << 20)


class _Rest:
  """The rest of a file whose next bytes, `head` (no '\\n' in it), were already read.

  For `_lines`, which reads with readline(size): pieces come as they would from the file
  itself at the start of `head`, and no seek is needed (compressed files have none).
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


class ReadLinesDoFn(beam.DoFn):
  """Reads one byte range of a text or JSON-lines file."""

  def __init__(self, file_format: str, task: str, max_record_bytes: int, report: bool = True):
    self.file_format = file_format
    self.task = task
    self.max_record_bytes = max_record_bytes
    self.report = report

  def process(self, file_range: FileRange):
    with open_for_lines(file_range.path) as f:
      if self.file_format == "text":
        batcher = _Batcher(self.task, file_range.path, text_lines=True, report=self.report)
        yield from self._read_text(f, file_range, batcher)
      else:
        batcher = _Batcher(self.task, file_range.path, report=self.report)
        lines = _lines(f, file_range.start, file_range.end, self.max_record_bytes)
        yield from self._add_lines(batcher, parse_json_line, lines, 0)
    yield from batcher.finish()

  def _add_lines(self, batcher: _Batcher, parse, lines, base_offset: int):
    """Hands `_lines` output (offsets from `base_offset`) to the batcher, line by line."""
    for offset, line, too_long in lines:
      if line is None:
        batcher.read += 1
        yield beam.pvalue.TaggedOutput(
            counts.DEAD_LETTER, dead_letter("record_too_long", batcher.path, base_offset + offset, too_long))
        continue
      yield from batcher.add(parse, line, base_offset + offset, self.task)

  def _read_text(self, f, file_range: FileRange, batcher: _Batcher):
    """Reads the range in blocks of whole physical lines (each ended by '\\n').

    A block is the lines starting in [position, position + n) for a read of n <= end -
    position bytes, the last one finished by a readline, so the range rule holds as in
    `_lines`; and `_lines` on a block in memory gives what it gives on the file there. A
    physical line not ended within max_record_bytes + 2 bytes past a read (the file's
    last, or one too long) is read by `_lines` from the file, in bounded pieces.
    """
    start, end = file_range.start, file_range.end
    position = start
    if start > 0:
      f.seek(start - 1)
      position = start - 1 + _skip_line(f, b"")  # finish the line that started before us
    while end < 0 or position < end:
      block = f.read(TEXT_BLOCK_BYTES if end < 0 else min(TEXT_BLOCK_BYTES, end - position))
      if not block:
        return
      if not block.endswith(b"\n"):  # finish the last line, in bounded memory
        block += f.readline(self.max_record_bytes + 2)
      whole = block.rfind(b"\n") + 1
      if whole:
        yield from self._add_block(batcher, block if whole == len(block) else block[:whole], position)
      position += whole
      if whole < len(block):  # the physical line at `position`, from `_lines`
        rest = _Rest(block[whole:], f)
        lines = _lines(rest, 0, 1, self.max_record_bytes)  # start 0: no seek
        yield from self._add_lines(batcher, check_text_line, lines, position)
        position += rest.bytes_read

  def _add_block(self, batcher: _Batcher, block: bytes, offset: int):
    """Adds a block of whole lines: on the fast path if plain, else halved (so a few odd
    lines cost little) down to TEXT_BLOCK_MIN_BYTES, then read line by line."""
    plain = plain_text_lines(block, self.max_record_bytes)
    if plain is not None:
      good, blank = plain
      batcher.read += len(good) + blank
      if blank:
        batcher.count_filtered("empty", blank)
      yield from batcher.add_good(good)
      return
    middle = _middle_line_start(block) if len(block) > TEXT_BLOCK_MIN_BYTES else 0
    if middle:
      yield from self._add_block(batcher, block[:middle], offset)
      yield from self._add_block(batcher, block[middle:], offset + middle)
      return
    lines = _lines(io.BytesIO(block), 0, -1, self.max_record_bytes)
    yield from self._add_lines(batcher, check_text_line, lines, offset)


def _middle_line_start(block: bytes) -> int:
  """The start of a line near the middle of a block of whole lines; 0 if it has one line."""
  half = len(block) // 2
  middle = block.find(b"\n", half) + 1
  if middle == len(block):
    middle = block.rfind(b"\n", 0, half) + 1
  return middle


def _physical_lines(f) -> Iterator[bytes]:
  """The lines of a binary file with their ends, as `bytes.splitlines(keepends=True)` of
  all of it gives them ('\n', '\r\n' or a lone '\r'), reading TEXT_BLOCK_BYTES at a time.

  A line that spans blocks is kept as its pieces and joined once, so a file of one huge
  line costs its length, not its length squared over the block size.
  """
  carry: List[bytes] = []  # pieces of a line not ended yet; only the last may end in '\r'
  for block in iter(lambda: f.read(TEXT_BLOCK_BYTES), b""):
    if carry and carry[-1].endswith(b"\r"):  # '\r' ended the line, unless '\n' follows it
      if block.startswith(b"\n"):
        carry.append(b"\n")
        block = block[1:]
      yield b"".join(carry)
      carry = []
    lines = block.splitlines(keepends=True)
    if not lines:
      continue
    if len(lines) == 1 and not lines[0].endswith((b"\n", b"\r")):  # no line ends in this block
      carry.append(lines[0])
      continue
    if carry:
      lines[0] = b"".join(carry + [lines[0]])
      carry = []
    # A last line without '\n' may go on in the next block (a '\r' may be half of '\r\n').
    if not lines[-1].endswith(b"\n"):
      carry = [lines.pop()]
    yield from lines
  if carry:
    yield b"".join(carry)


class ReadConllDoFn(beam.DoFn):
  """Reads one CoNLL file: blocks of rows separated by blank lines, one record each.

  The file is read twice, a block at a time: once to see whether it has a tab, then for
  its records; memory holds one block and one record, not the file.
  """

  def __init__(self, task: str, max_record_bytes: int, report: bool = True):
    self.task = task
    self.max_record_bytes = max_record_bytes
    self.report = report

  def process(self, file_range: FileRange):
    path = file_range.path
    with open_for_lines(path) as f:  # columns split on tabs, or on runs of spaces if a file has none
      use_tabs = any(b"\t" in block for block in iter(lambda: f.read(TEXT_BLOCK_BYTES), b""))
    with open_for_lines(path) as f:
      yield from self._read(path, _physical_lines(f), use_tabs)

  def _read(self, path: str, lines: Iterator[bytes], use_tabs: bool):
    batcher = _Batcher(self.task, path, report=self.report)
    block: List[bytes] = []
    block_offset = 0
    block_bytes = 0  # of the record so far; past the limit, lines are counted, not kept
    offset = 0

    def end_block():
      raw = b"\n".join(block)
      if block_bytes > self.max_record_bytes:
        batcher.read += 1
        return [beam.pvalue.TaggedOutput(
            counts.DEAD_LETTER, dead_letter("record_too_long", path, block_offset, raw))]
      return list(batcher.add(self._parse_block, raw, block_offset, use_tabs))

    for line in lines:
      line_offset, offset = offset, offset + len(line)
      line = line.rstrip(b"\r\n")
      if records.is_conll_skip_line(line):
        continue
      if records.is_blank(line):
        if block:
          yield from end_block()
          block, block_bytes = [], 0
        continue
      if not block:
        block_offset = line_offset
      block_bytes += len(line) + bool(block)  # joined by '\n'
      if block_bytes <= self.max_record_bytes or not block:
        block.append(line)
    if block:
      yield from end_block()
    yield from batcher.finish()

  def _parse_block(self, raw: bytes, use_tabs: bool) -> Record:
    return records.parse_conll_block(records.decode(raw).split("\n"), use_tabs, self.task)


class ReadCorpus(beam.PTransform):
  """Files → RecordBatches of good records, plus `dead_letter` and `counts` outputs.

  Returns a DoOutputsTuple: the main output holds RecordBatches (schema `arrow_schema`),
  `counts.DEAD_LETTER` holds dicts {reason, file, offset, record} and `counts.COUNTS`
  holds (name, n) pairs.

  With `report=False` the same records come out but nothing is counted (no counts, no
  Beam counters): for a second read of the same files, so that every record is counted
  once.
  """

  def __init__(self, input_files: Sequence[InputFile], file_format: str, task: str,
               max_record_bytes: int, report: bool = True):
    super().__init__()
    self.input_files = list(input_files)
    self.file_format = file_format
    self.task = task
    self.max_record_bytes = max_record_bytes
    self.report = report

  def expand(self, pbegin):
    ranges = (
        pbegin
        | "ListFiles" >> beam.Create(self.input_files)
        | "SplitIntoRanges" >> beam.FlatMap(split_into_ranges, self.file_format != "conll")
        | "Distribute" >> beam.Reshuffle())
    if self.file_format == "conll":
      read = ReadConllDoFn(self.task, self.max_record_bytes, self.report)
    else:
      read = ReadLinesDoFn(self.file_format, self.task, self.max_record_bytes, self.report)
    return ranges | "Parse" >> beam.ParDo(read).with_outputs(
        counts.DEAD_LETTER, counts.COUNTS, main="records")


def split_fraction_threshold(eval_fraction: float) -> int:
  return int(eval_fraction * (1 << 64))


class Split(beam.PTransform):
  """RecordBatches → {'train': ..., 'eval': ...} by the stable content hash.

  The same record always lands in the same split, whatever the run or worker.
  """

  def __init__(self, eval_fraction: float):
    super().__init__()
    self.threshold = split_fraction_threshold(eval_fraction)

  def expand(self, record_batches):
    tagged = record_batches | "BySplitKey" >> beam.FlatMap(_split_batch, self.threshold).with_outputs(
        "train", "eval")
    return {"train": tagged.train, "eval": tagged.eval}


def _split_batch(batch: pa.RecordBatch, threshold: int):
  import pyarrow.compute as pc  # pylint: disable=g-import-not-at-top
  is_eval = pc.less(batch.column(SPLIT_KEY), pa.scalar(threshold, pa.uint64()))
  columns = [name for name in batch.schema.names if name != SPLIT_KEY]
  for split, mask in (("eval", is_eval), ("train", pc.invert(is_eval))):
    part = batch.filter(mask).select(columns)
    if part.num_rows:
      yield beam.pvalue.TaggedOutput(split, part)
