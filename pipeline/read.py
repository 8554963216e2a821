"""ReadCorpus: raw files → batches of good records (pyarrow RecordBatches), dead letters, counts.

    files ─► byte ranges (pipeline.inputs) ─► lines (corpus.lines) ─► records (corpus.records)
          ─► RecordBatches (pipeline.arrow)

Records leave this stage in batches, never one Beam element per line: per-element
overhead, not parsing, is what makes a naive Beam pipeline slow. Uncompressed UTF-8
text and JSON-lines files are read in byte ranges, so one large file is read by many
workers; compressed files, files in another `--encoding`, CoNLL and CoNLL-U files are
read whole by one worker each, a block at a time.

Plain text, the common and large case, is read a block of lines at a time: a block in
which every line is plain (`lines.plain_text_lines`) is split, filtered and hashed with a
few whole-block operations. A block with other lines is halved until the odd lines are
in small blocks, which go line by line through `corpus.lines.read_lines`, as JSON lines do; both
ways give the same records, counts and dead letters.

Every record read is counted exactly once, as one of: a good record (it goes on), a
filtered record (empty or whitespace-only) or a dead letter (malformed, with a reason).
A UTF-8 byte-order mark at the start of a file is skipped, not read.
"""

import io
import json
from typing import List, Sequence

import apache_beam as beam
import pyarrow as pa
from apache_beam.transforms.window import GlobalWindows

from corpus import blocks
from corpus import files
from corpus import lines
from corpus import parquet
from corpus import reader
from corpus import records
from pipeline import arrow
from pipeline import counts
from pipeline import inputs
from pipeline.inputs import FileRange, InputChangedError, InputFile  # pylint: disable=unused-import

DEAD_LETTER_RECORD_CHARS = 10_000  # keep at most this much of a bad record in errors/


def dead_letter(reason: str, path: str, offset: int, raw) -> dict:
  """errors/'s row for a bad record: its bytes or text, or a Parquet row (as JSON)."""
  if isinstance(raw, bytes):
    raw = raw.decode("utf-8", errors="replace")
  elif isinstance(raw, dict):
    raw = json.dumps(raw, ensure_ascii=False, default=str)
  return {"reason": reason, "file": path, "offset": offset, "record": raw[:DEAD_LETTER_RECORD_CHARS]}


def check_text_line(raw: bytes, task: str) -> bytes:
  """parse_text_line, but returns the line's bytes: text_record_batch takes them as they are."""
  records.parse_text_line(raw, task)
  return raw


class _Batcher:
  """Collects good records into RecordBatches; counts everything else.

  Records are `Record`s for `to_record_batch`, or for text the lines' bytes for
  `text_record_batch`. Batches hold BATCH_SIZE records, the last one of a bundle fewer.
  `path` is the file being read, for dead letters. With `report` False (a second read of
  the same files), nothing is counted.
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
    except records.Filtered as filtered:
      self.count_filtered(filtered.reason)
    except records.BadRecord as bad:
      yield self.dead(bad.reason, offset, raw)
    if len(self.records) >= arrow.BATCH_SIZE:
      yield from self.flush()

  def add_line(self, parse, line: lines.Line, base_offset: int, *args):
    """`add` for a line from `lines.read_lines` (offsets from `base_offset`)."""
    if line.too_long:
      self.read += 1
      yield self.dead("record_too_long", base_offset + line.offset, line.data)
    else:
      yield from self.add(parse, line.data, base_offset + line.offset, *args)

  def add_good(self, good: List):
    """Adds records already parsed and checked (counted by the caller); yields full batches."""
    self.records.extend(good)
    full = len(self.records) - len(self.records) % arrow.BATCH_SIZE
    for start in range(0, full, arrow.BATCH_SIZE):
      yield self._to_batch(self.records[start:start + arrow.BATCH_SIZE])
    del self.records[:full]

  def dead(self, reason: str, offset: int, raw) -> beam.pvalue.TaggedOutput:
    return beam.pvalue.TaggedOutput(counts.DEAD_LETTER, dead_letter(reason, self.path, offset, raw))

  def count_filtered(self, reason: str, n: int = 1):
    self.filtered[reason] = self.filtered.get(reason, 0) + n

  def _to_batch(self, good: List) -> pa.RecordBatch:
    return arrow.text_record_batch(good) if self.text_lines else arrow.to_record_batch(good, self.task)

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


def _open_range(file_range: FileRange, encoding: str):
  """(file, offset): the file at the first line of the range (past a byte-order mark at 0)."""
  f = inputs.open_for_lines(file_range.path, encoding, file_range.listed_size)
  return f, inputs.seek_to_range(f, file_range)


def _check_read_to(file_range: FileRange, position: int) -> None:
  """A range that ends before its listed end means the file shrank under the job."""
  if 0 <= position < file_range.end:
    raise InputChangedError(f"{file_range.path}: {file_range.listed_size} bytes when listed, it ended at "
                            f"{position} when read; it changed while the job ran")


def _windowed(output):
  """An output of finish_bundle, which Beam takes only as a WindowedValue (batch input: the
  global window)."""
  if isinstance(output, beam.pvalue.TaggedOutput):
    return beam.pvalue.TaggedOutput(output.tag, GlobalWindows.windowed_value(output.value))
  return GlobalWindows.windowed_value(output)


class _BundleBatchingDoFn(beam.DoFn):
  """A reader whose batches and counts span the ranges of a bundle.

  Many small files then make full batches, not one small batch each: every batch costs a
  TensorFlow graph run and more in each stage after this one. The last, partial batch
  and the counts are emitted when the bundle finishes.
  """

  text_lines = False

  def start_bundle(self):
    self._batcher = None

  def batcher(self, path: str) -> _Batcher:
    if self._batcher is None:
      self._batcher = _Batcher(self.task, path, text_lines=self.text_lines, report=self.report)
    self._batcher.path = path
    return self._batcher

  def finish_bundle(self):
    if self._batcher is not None:
      batcher, self._batcher = self._batcher, None
      for output in batcher.finish():
        yield _windowed(output)


class ReadLinesDoFn(_BundleBatchingDoFn):
  """Reads byte ranges of text or JSON-lines files."""

  def __init__(self, file_format: str, task: str, max_record_bytes: int, report: bool = True,
               encoding: str = files.UTF8, fields: records.Fields = records.DEFAULT_FIELDS):
    self.file_format = file_format
    self.task = task
    self.fields = fields
    self.max_record_bytes = max_record_bytes
    self.report = report
    self.encoding = encoding
    self.text_lines = file_format == "text"

  def process(self, file_range: FileRange):
    f, start = _open_range(file_range, self.encoding)
    batcher = self.batcher(file_range.path)
    with f:
      if self.file_format == "text":
        yield from self._read_text(f, file_range, start, batcher)
      else:
        for line in lines.read_lines(f, start, file_range.end, self.max_record_bytes):
          yield from batcher.add_line(records.parse_json_line, line, 0, self.task, self.fields)
        if file_range.end >= 0:  # read_lines stops at `end`, or at the end of the file
          _check_read_to(file_range, f.tell())

  def _read_text(self, f, file_range: FileRange, start: int, batcher: _Batcher):
    """Reads the range, from `start` where `f` is, in blocks of whole physical lines (each
    ended by '\\n').

    A block is the lines starting in [position, position + n) for a read of n <= end -
    position bytes, the last one finished by a readline, so the range rule holds as in
    `read_lines`; and `read_lines` on a block in memory gives what it gives on the file
    there. A physical line not ended within max_record_bytes + 2 bytes past a read (the
    file's last, or one too long) is read by `read_lines` from the file, in bounded pieces.
    """
    end = file_range.end
    position = start
    while end < 0 or position < end:
      block = f.read(lines.TEXT_BLOCK_BYTES if end < 0 else min(lines.TEXT_BLOCK_BYTES, end - position))
      if not block:
        _check_read_to(file_range, position)
        return
      if not block.endswith(b"\n"):  # finish the last line, in bounded memory
        block += f.readline(self.max_record_bytes + 2)
      whole = block.rfind(b"\n") + 1
      if whole:
        yield from self._add_block(batcher, block if whole == len(block) else block[:whole], position)
      position += whole
      if whole < len(block):  # the physical line at `position`, from `read_lines`
        rest = lines.Rest(block[whole:], f)
        for line in lines.read_lines(rest, 0, 1, self.max_record_bytes):  # start 0: no seek
          yield from batcher.add_line(check_text_line, line, position, self.task)
        position += rest.bytes_read

  def _add_block(self, batcher: _Batcher, block: bytes, offset: int):
    """Adds a block of whole lines: on the fast path if plain, else halved (so a few odd
    lines cost little) down to TEXT_BLOCK_MIN_BYTES, then read line by line."""
    plain = lines.plain_text_lines(block, self.max_record_bytes)
    if plain is not None:
      good, blank = plain
      batcher.read += len(good) + blank
      if blank:
        batcher.count_filtered("empty", blank)
      yield from batcher.add_good(good)
      return
    middle = lines.middle_line_start(block) if len(block) > lines.TEXT_BLOCK_MIN_BYTES else 0
    if middle:
      yield from self._add_block(batcher, block[:middle], offset)
      yield from self._add_block(batcher, block[middle:], offset + middle)
      return
    for line in lines.read_lines(io.BytesIO(block), 0, -1, self.max_record_bytes):
      yield from batcher.add_line(check_text_line, line, offset, self.task)


class ReadConllDoFn(_BundleBatchingDoFn):
  """Reads CoNLL and CoNLL-U files: blocks of rows separated by blank lines, one record each.

  A CoNLL file is read twice, a block at a time: once to see whether it has a tab, then
  for its records; memory holds one block and one record, not the file.
  """

  def __init__(self, task: str, max_record_bytes: int, report: bool = True, encoding: str = files.UTF8,
               file_format: str = "conll", label_column=None):
    self.task = task
    self.max_record_bytes = max_record_bytes
    self.report = report
    self.encoding = encoding
    self.file_format = file_format
    self.label_index = records.label_column_index(label_column, file_format)

  def process(self, file_range: FileRange):
    use_tabs = True
    if self.file_format == "conll":  # columns split on tabs, or on runs of spaces if a file has none
      f, _ = _open_range(file_range, self.encoding)
      with f:
        use_tabs = reader.has_tabs(f)
    f, start = _open_range(file_range, self.encoding)
    with f:
      batcher = self.batcher(file_range.path)
      file_lines = lines.read_lines(f, start, -1, self.max_record_bytes)
      for block in blocks.sentence_blocks(file_lines, self.max_record_bytes, self.file_format):
        if block.too_long:
          batcher.read += 1
          yield batcher.dead("record_too_long", block.offset, block.raw())
        else:
          yield from batcher.add(self._parse_block, block.raw(), block.offset, block.rows, use_tabs)

  def _parse_block(self, raw: bytes, rows, use_tabs: bool) -> records.Record:
    del raw  # the dead letter's record, if any; parsed from its rows
    return reader.parse_block([row.data for row in rows], self.file_format, self.task, use_tabs, self.label_index)


class ReadParquetDoFn(_BundleBatchingDoFn):
  """Reads Parquet row groups (FileRange start/end: row-group indices); a row is a record."""

  def __init__(self, task: str, report: bool = True, fields: records.Fields = records.DEFAULT_FIELDS):
    self.task, self.report, self.fields = task, report, fields

  def process(self, file_range: FileRange):
    with inputs.open_raw(file_range.path, file_range.listed_size) as f:
      groups = parquet.row_groups(f)[file_range.start:file_range.end]
      batcher = self.batcher(file_range.path)
      for group in groups:
        rows = parquet.read_rows(f, group.index, parquet.needed_fields(self.task, self.fields))
        for number, row in enumerate(rows, group.first_row):
          yield from batcher.add(parquet.parse_row, row, number, self.task, self.fields)


@beam.ptransform_fn
def ReadCorpus(pbegin, input_files: Sequence[InputFile], file_format: str, task: str,  # pylint: disable=invalid-name
               max_record_bytes: int, report: bool = True, encoding: str = files.UTF8, label_column=None,
               fields: records.Fields = records.DEFAULT_FIELDS):
  """Files → RecordBatches of good records, plus `dead_letter` and `counts` outputs.

  Returns a DoOutputsTuple: the main output (`.records`) holds RecordBatches (schema
  `arrow.arrow_schema`), `counts.DEAD_LETTER` holds dicts {reason, file, offset, record}
  and `counts.COUNTS` holds (name, n) pairs. Offsets are byte offsets in the file, or,
  for another `encoding`, in its UTF-8 transcoding.

  With `report=False` the same records come out but nothing is counted (no counts, no
  Beam counters): for a second read of the same files, so that every record is counted
  once.
  """
  splittable = file_format in reader.LINE_FORMATS and files.is_utf8(encoding)
  if file_format == "parquet":
    split = beam.FlatMap(inputs.split_into_row_groups)
  else:
    split = beam.FlatMap(inputs.split_into_ranges, splittable)
  ranges = (
      pbegin
      | "ListFiles" >> beam.Create(list(input_files))
      | "SplitIntoRanges" >> split
      | "Distribute" >> beam.Reshuffle())
  if file_format in reader.BLOCK_FORMATS:
    read = ReadConllDoFn(task, max_record_bytes, report, encoding, file_format, label_column)
  elif file_format == "parquet":
    read = ReadParquetDoFn(task, report, fields)
  else:
    read = ReadLinesDoFn(file_format, task, max_record_bytes, report, encoding, fields)
  return ranges | "Parse" >> beam.ParDo(read).with_outputs(counts.DEAD_LETTER, counts.COUNTS, main="records")
