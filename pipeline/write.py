"""WriteShards and WriteDeadLetters: deterministic files, whatever the runner or workers.

Beam's own sinks place records in shards at random, so shards would differ run to run.
Here each record goes to shard `fingerprint(bytes) % num_shards` (FarmHash Fingerprint64,
stable across processes and machines, computed a batch at a time in TF), and inside a
shard records are sorted by that fingerprint, then by their bytes: a deterministic
shuffle, not input order. Every shard, even an empty one, is written to a temporary name
and renamed into place, so a reader never sees half a shard under its final name.

Where they are encoded, a worker buffers records by shard and, every RUN_BYTES and at
the end of each bundle, hands each shard's part of its buffer on as a "run" (one layout,
below), in one of two ways (`--shard_writer`). Either way each shard is then written by
one worker, from all its records, by the same `write_shard` (sorted, written, renamed),
with the same counts; as the order is the sort's, the two give the same bytes.

- "runs": each run is a temporary file under OUTPUT_DIR/.tmp/runs, and only the runs'
  paths are grouped by shard. The runner moves paths, not data: right for Beam's
  local runners, whose GroupByKey holds everything it groups in memory, so memory stays
  at a worker's buffer plus one shard whatever the corpus. The cost is one more write
  and read of the data on the output's file system, and a file per shard touched per
  buffer and per bundle: (buffers + bundles) x shards, hundreds of millions of small
  objects at 1 TB with automatic shards, which a distributed job cannot afford. Like
  Beam's sinks' temporary files, runs of failed bundles are never read, and all are
  removed with OUTPUT_DIR/.tmp when the job finishes.
- "shuffle": each run is one bytes value (`encode_run`), and the values are grouped by
  shard through the runner's own shuffle (Dataflow Shuffle, Flink's or Spark's network
  shuffle), which spills to disk and hands a shard's runs to its writer as a stream: no
  temporary file, and one shard decoded in memory. The values are typed, so Beam codes
  them as a varint and length-prefixed bytes. One value per (buffer, shard) rather than
  per (batch, shard): a 4096-record batch spread over thousands of shards would shuffle
  about one value per record, each with the runner's per-element cost.

`auto` (the default) picks runs on the local runners and shuffle on every other
(`shard_writer_for`).
"""

import heapq
import json
import logging
import math
import os
import struct
import uuid
import zlib
from typing import Iterable, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.options.pipeline_options import StandardOptions

import contract
from pipeline import counts

TARGET_SHARD_BYTES = 128 << 20  # automatic shard count: shards of roughly 100-200 MB
LARGE_SHARD_BYTES = 2 << 30  # a requested shard count that makes larger shards is warned about
# The automatic count is decided before anything is encoded, from the records read: a
# SequenceExample takes about twice the bytes of its record in Arrow (BENCHMARKS.md).
SHARD_BYTES_PER_INPUT_BYTE = 2
TEMP_DIR = ".tmp"  # under OUTPUT_DIR; removed when the job finishes
RUNS_DIR = "runs"  # under TEMP_DIR
RUN_BYTES = 64 << 20  # a worker writes its runs whenever it holds this many bytes of records
DEAD_LETTER_FILE = "dead_letter.jsonl"
DEAD_LETTER_RUNS_DIR = "dead_letter_runs"  # under TEMP_DIR
MERGE_FAN_IN = 64  # runs merged at once: files open on one worker


def shard_count(requested: int, total_bytes: int) -> int:
  if requested > 0:
    if total_bytes / requested > LARGE_SHARD_BYTES:
      logging.warning("--num_shards %d makes shards of about %.1f GB, and a worker holds a whole shard "
                      "while it writes it; raise --num_shards, or leave it at 0 (automatic)",
                      requested, total_bytes / requested / 1e9)
    return requested
  return max(1, math.ceil(total_bytes / TARGET_SHARD_BYTES))


class ShardCount(beam.PTransform):
  """A split's RecordBatches, as read → a one-element PCollection: its number of shards.

  `requested` if above 0, else about TARGET_SHARD_BYTES per shard, estimated from the
  records' size (SHARD_BYTES_PER_INPUT_BYTE), so that it is known before anything is
  encoded and records can go to their shards as soon as they are.
  """

  def __init__(self, requested: int):
    super().__init__()
    self.requested = requested

  def expand(self, record_batches):
    return (record_batches
            | "Bytes" >> beam.Map(lambda batch: batch.nbytes)
            | "TotalBytes" >> beam.CombineGlobally(sum)
            | "Count" >> beam.Map(lambda total: shard_count(self.requested, SHARD_BYTES_PER_INPUT_BYTE * total)))


def sort_keys(records: np.ndarray) -> np.ndarray:
  """[n] bytes → [n] uint64 stable fingerprints (the same on every machine and run)."""
  if not len(records):
    return np.zeros(0, np.uint64)
  fingerprints = tf.fingerprint(tf.constant(records, tf.string)).numpy()  # [n, 8] little-endian
  return fingerprints.view("<u8").reshape(-1).astype(np.uint64)


def assign_to_shards(serialized: Sequence[bytes], num_shards: int) -> Iterable[Tuple[int, np.ndarray]]:
  """One batch → (shard, its records) pairs, one per shard it touches."""
  records = np.asarray(serialized, dtype=object).reshape(-1)
  shards = sort_keys(records) % np.uint64(num_shards)
  order = np.argsort(shards, kind="stable")
  for part in np.split(order, np.flatnonzero(np.diff(shards[order])) + 1):
    if part.size:
      yield int(shards[part[0]]), records[part]


def record_order(keys: np.ndarray, records: np.ndarray) -> np.ndarray:
  """Indices that sort records by key, then by bytes where different records share a key.

  Copies of a record share a key harmlessly (their order cannot show), so only a real
  64-bit collision costs a Python sort, of the few records involved.
  """
  order = np.argsort(keys, kind="stable")
  sorted_keys, sorted_records = keys[order], records[order]
  clashes = (sorted_keys[1:] == sorted_keys[:-1]) & (sorted_records[1:] != sorted_records[:-1])
  for key in np.unique(sorted_keys[1:][clashes]):
    start, end = np.searchsorted(sorted_keys, key, "left"), np.searchsorted(sorted_keys, key, "right")
    order[start:end] = sorted(order[start:end], key=records.__getitem__)
  return order


def write_atomically(output_dir: str, final_path: str, write_fn) -> None:
  """Writes through `write_fn(temp_path)` and renames into place (also on GCS).

  Temporary files live in OUTPUT_DIR/.tmp, which the driver removes at the end.
  """
  temp_dir = os.path.join(output_dir, TEMP_DIR)
  tf.io.gfile.makedirs(temp_dir)
  temp_path = os.path.join(temp_dir, f"{os.path.basename(final_path)}.{uuid.uuid4().hex}")
  write_fn(temp_path)
  tf.io.gfile.rename(temp_path, final_path, overwrite=True)


def _write_records(path: str, records: np.ndarray, options) -> None:
  with tf.io.TFRecordWriter(path, options) as writer:
    for record in records:
      writer.write(record)


# A run is a part of a shard's records that only this pipeline reads back (a temporary
# file, or one value in the runner's shuffle), so it is laid out to be written and read
# with whole-array operations (faster than TFRecord files through tf.data, BENCHMARKS.md):
# magic, record count n and CRC-32 of the rest (little-endian uint32, uint64, uint32),
# then n uint64 record lengths, then the records end to end. The records b"ab" and b"c":
#   52 55 4e 31 | 02 00 00 00 00 00 00 00 | CRC-32 | 02 00.. (8 bytes) 01 00.. (8 bytes) | 61 62 63
_RUN_MAGIC = 0x314E5552  # b"RUN1"
_RUN_HEADER = struct.Struct("<IQI")


def _run_pieces(parts: Sequence[np.ndarray]) -> List[bytes]:
  """Arrays of records (bytes) → the bytes of one run, in pieces to write or join."""
  count = sum(len(records) for records in parts)
  lengths = np.concatenate([np.fromiter(map(len, records), np.dtype("<u8"), len(records)) for records in parts]
                           or [np.zeros(0, np.dtype("<u8"))]).tobytes()
  data = [b"".join(records) for records in parts]
  checksum = zlib.crc32(lengths)
  for chunk in data:
    checksum = zlib.crc32(chunk, checksum)
  return [_RUN_HEADER.pack(_RUN_MAGIC, count, checksum), lengths, *data]


def encode_run(parts: Sequence[np.ndarray]) -> bytes:
  """Arrays of records (bytes) → one run, as bytes."""
  return b"".join(_run_pieces(parts))


def write_run(path: str, parts: Sequence[np.ndarray]) -> None:
  """Writes arrays of records (bytes) as one run file."""
  with tf.io.gfile.GFile(path, "wb") as f:
    for piece in _run_pieces(parts):
      f.write(piece)


def decode_run(data: bytes, source: str) -> List[bytes]:
  """The records of a run; a damaged run (short, or its checksum off) is an error naming `source`."""
  header = _RUN_HEADER.size
  if len(data) >= header:
    magic, count, checksum = _RUN_HEADER.unpack_from(data)
    records_start = header + 8 * count
    if magic == _RUN_MAGIC and len(data) >= records_start and zlib.crc32(memoryview(data)[header:]) == checksum:
      ends = records_start + np.cumsum(np.frombuffer(data, np.dtype("<u8"), count, header), dtype=np.int64)
      if not count or ends[-1] == len(data):
        ends = ends.tolist()
        return [data[start:end] for start, end in zip([records_start] + ends[:-1], ends)]
  raise IOError(f"{source}: not a complete run of records (damaged or truncated)")


def read_run(path: str) -> List[bytes]:
  """The records of a run file; a damaged run is an error."""
  with tf.io.gfile.GFile(path, "rb") as f:
    return decode_run(f.read(), path)


def _as_array(records: List[bytes]) -> np.ndarray:
  array = np.empty(len(records), object)
  array[:] = records
  return array


def read_runs(paths: Sequence[str]) -> np.ndarray:
  """The records of run files, in order, as one numpy array of bytes."""
  return _as_array([record for path in paths for record in read_run(path)])


def decode_runs(runs: Iterable[bytes]) -> np.ndarray:
  """The records of runs given as bytes, in order, as one numpy array of bytes.

  Decoded one at a time: a stream of runs from the runner's shuffle is held as records,
  not also as runs.
  """
  return _as_array([record for run in runs for record in decode_run(run, "a run from the shuffle")])


RUNS, SHUFFLE = "runs", "shuffle"  # --shard_writer; "auto" picks one by runner


def shard_writer_for(requested: str, runner: beam.runners.PipelineRunner) -> str:
  """RUNS or SHUFFLE: `requested`, or for "auto" the one that scales on `runner`.

  Runs on Beam's local runners (its own list: the FnApiRunner in any
  --direct_running_mode, the DirectRunners, Prism, and their subclasses), whose
  GroupByKey holds in memory everything it groups, so records grouped there would make
  memory grow with the corpus; shuffle on every other (Dataflow, Flink, Spark, any
  portable job server), whose shuffle spills to disk and where runs would make hundreds
  of millions of small files.
  """
  if requested in (RUNS, SHUFFLE):
    return requested
  if requested != "auto":
    raise ValueError(f"shard writer {requested!r}: not auto, {RUNS} or {SHUFFLE}")
  local = any(cls.__name__ in StandardOptions.LOCAL_RUNNERS for cls in type(runner).__mro__)
  return RUNS if local else SHUFFLE


class _MakeRunsDoFn(beam.DoFn):
  """Arrays of serialized examples → (shard, run) pairs: each time it holds RUN_BYTES of
  records, and at the end of every bundle, one run per shard it holds records for,
  handed on as a file's path (RUNS) or as bytes (SHUFFLE)."""

  def __init__(self, output_dir: str, split: str, shard_writer: str):
    self.output_dir, self.split, self.shard_writer = output_dir, split, shard_writer
    self._parts, self._bytes = {}, 0

  def start_bundle(self):
    self._parts, self._bytes = {}, 0

  def process(self, serialized, num_shards: int):
    for shard, records in assign_to_shards(serialized, num_shards):
      self._parts.setdefault(shard, []).append(records)
    self._bytes += sum(map(len, serialized))
    if self._bytes >= RUN_BYTES:
      yield from self._make_runs()

  def finish_bundle(self):
    for shard_and_run in self._make_runs():
      yield beam.transforms.window.GlobalWindows.windowed_value(shard_and_run)

  def _make_runs(self):
    parts, self._parts, self._bytes = self._parts, {}, 0
    runs_dir = os.path.join(self.output_dir, TEMP_DIR, RUNS_DIR)
    if parts and self.shard_writer == RUNS:
      tf.io.gfile.makedirs(runs_dir)
    for shard in sorted(parts):
      if self.shard_writer == SHUFFLE:
        run = encode_run(parts.pop(shard))
        counts.inc(counts.key(counts.SHUFFLED_BYTES, self.split), len(run))
        yield shard, run
      else:
        path = os.path.join(runs_dir, f"{self.split}-{shard:05d}-{uuid.uuid4().hex}.run")
        write_run(path, parts.pop(shard))
        counts.inc(counts.key(counts.RUN_FILES, self.split))
        yield shard, path


def write_shard(output_dir: str, name: str, records: np.ndarray, compression: str) -> int:
  """Writes the shard `name` of `records` (bytes, any order) in `record_order`; returns their number."""
  records = records[record_order(sort_keys(records), records)]
  options = tf.io.TFRecordOptions(compression_type="GZIP" if compression == "gzip" else "")
  write_atomically(output_dir, os.path.join(output_dir, name), lambda path: _write_records(path, records, options))
  return len(records)


class _WriteShardDoFn(beam.DoFn):
  """(shard, its runs: paths or bytes) → the shard file; emits its counts."""

  def __init__(self, output_dir: str, split: str, compression: str, shard_writer: str):
    self.output_dir, self.split, self.compression = output_dir, split, compression
    self.shard_writer = shard_writer

  def process(self, shard_and_runs, num_shards: int):
    shard, runs = shard_and_runs
    runs = (run for run in runs if run is not None)  # None: every shard's marker
    records = decode_runs(runs) if self.shard_writer == SHUFFLE else read_runs(sorted(runs))
    name = contract.shard_name(self.split, shard, num_shards, self.compression)
    written = write_shard(self.output_dir, name, records, self.compression)
    for count_name in (counts.key(counts.SHARD, name), counts.key(counts.WRITTEN, self.split)):
      counts.inc(count_name, written)
      yield (count_name, written)


class WriteShards(beam.PTransform):
  """Batches (sequences) of serialized examples of one split → shard files; returns (name, n) counts.

  `num_shards` is an int above 0 or a one-element PCollection of it (`ShardCount`); it
  must not depend on the records written here, or they would be held until it is known.
  `shard_writer` is RUNS, SHUFFLE or "auto" (`shard_writer_for` the pipeline's runner).
  """

  def __init__(self, output_dir: str, split: str, num_shards, compression: str, shard_writer: str = "auto"):
    super().__init__()
    self.output_dir, self.split = output_dir, split
    self.num_shards, self.compression, self.shard_writer = num_shards, compression, shard_writer

  def expand(self, serialized_lists):
    shard_writer = shard_writer_for(self.shard_writer, serialized_lists.pipeline.runner)
    # Typed, so that the shuffle codes (shard, run) as a varint and a length-prefixed
    # string rather than through Beam's fallback coder; None is every shard's marker.
    shard_and_run = Tuple[int, Optional[bytes if shard_writer == SHUFFLE else str]]
    num_shards = self.num_shards
    if isinstance(num_shards, int):
      num_shards = serialized_lists.pipeline | "NumShards" >> beam.Create([num_shards])
    num_shards = beam.pvalue.AsSingleton(num_shards)
    runs = (serialized_lists
            | "MakeRuns" >> beam.ParDo(_MakeRunsDoFn(self.output_dir, self.split, shard_writer), num_shards)
            .with_output_types(shard_and_run))
    every_shard = (  # so that a shard that gets no record is still written, empty
        serialized_lists.pipeline
        | "One" >> beam.Create([None])
        | "EveryShard" >> beam.FlatMap(lambda _, n: [(i, None) for i in range(n)], num_shards)
        .with_output_types(shard_and_run))
    return (
        (runs, every_shard)
        | "Flatten" >> beam.Flatten()
        | "GroupByShard" >> beam.GroupByKey()
        | "Write" >> beam.ParDo(
            _WriteShardDoFn(self.output_dir, self.split, self.compression, shard_writer), num_shards))


def _dead_letter_line(dead_letter: dict) -> bytes:
  # JSON escapes every control character, so a line holds no byte below b" " and sorting
  # lines with their b"\n" gives the order of the lines without it.
  return json.dumps(dead_letter, ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\n"


def _new_dead_letter_run(output_dir: str) -> str:
  runs_dir = os.path.join(output_dir, TEMP_DIR, DEAD_LETTER_RUNS_DIR)
  tf.io.gfile.makedirs(runs_dir)
  return os.path.join(runs_dir, f"{uuid.uuid4().hex}.jsonl")


def merge_sorted_lines(paths: Sequence[str], out_path: str) -> None:
  """Files of sorted lines → one file of all their lines, sorted; streamed, so memory
  holds a line per file, not the files."""
  files = [tf.io.gfile.GFile(path, "rb") for path in paths]
  try:
    with tf.io.gfile.GFile(out_path, "wb") as out:
      buffer = []
      for line in heapq.merge(*files):
        buffer.append(line)
        if len(buffer) >= 4096:
          out.write(b"".join(buffer))
          buffer = []
      out.write(b"".join(buffer))
  finally:
    for f in files:
      f.close()


def _write_dead_letters(output_dir: str, runs: Sequence[str]) -> None:
  """Sorted runs → errors/dead_letter.jsonl, every line sorted, merged MERGE_FAN_IN runs at
  a time (a pass more for each factor of MERGE_FAN_IN), so few files are open at once."""
  runs = sorted(runs)
  while len(runs) > MERGE_FAN_IN:
    merged = []
    for start in range(0, len(runs), MERGE_FAN_IN):
      merged.append(_new_dead_letter_run(output_dir))
      merge_sorted_lines(runs[start:start + MERGE_FAN_IN], merged[-1])
    runs = merged
  path = os.path.join(output_dir, contract.ERRORS_DIR, DEAD_LETTER_FILE)
  tf.io.gfile.makedirs(os.path.dirname(path))
  write_atomically(output_dir, path, lambda temp_path: merge_sorted_lines(runs, temp_path))


class _WriteDeadLetterRunsDoFn(beam.DoFn):
  """Dead-letter dicts → runs of sorted JSON lines (temporary files); emits their paths,
  each time it holds RUN_BYTES of lines and at the end of every bundle."""

  def __init__(self, output_dir: str):
    self.output_dir = output_dir
    self._lines, self._bytes = [], 0

  def start_bundle(self):
    self._lines, self._bytes = [], 0

  def process(self, dead_letter):
    line = _dead_letter_line(dead_letter)
    self._lines.append(line)
    self._bytes += len(line)
    if self._bytes >= RUN_BYTES:
      yield self._write_run()

  def finish_bundle(self):
    if self._lines:
      yield beam.transforms.window.GlobalWindows.windowed_value(self._write_run())

  def _write_run(self) -> str:
    path = _new_dead_letter_run(self.output_dir)
    self._lines.sort()
    with tf.io.gfile.GFile(path, "wb") as f:
      f.write(b"".join(self._lines))
    self._lines, self._bytes = [], 0
    return path


class WriteDeadLetters(beam.PTransform):
  """Dead-letter dicts → errors/dead_letter.jsonl (sorted lines); returns (name, n) counts.

  As the shards are, the file is written from sorted runs: only their paths meet on one
  worker, which merges them as streams.
  """

  def __init__(self, output_dir: str):
    super().__init__()
    self.output_dir = output_dir

  def expand(self, dead_letters):
    runs = (dead_letters | "WriteRuns" >> beam.ParDo(_WriteDeadLetterRunsDoFn(self.output_dir))
            | "Key" >> beam.Map(lambda path: (0, path)))
    always = dead_letters.pipeline | "Always" >> beam.Create([(0, None)])  # write even when empty
    _ = (
        (runs, always)
        | "Flatten" >> beam.Flatten()
        | "GatherRuns" >> beam.GroupByKey()
        | "Write" >> beam.Map(lambda kv: _write_dead_letters(self.output_dir, [p for p in kv[1] if p])))

    def count(dead_letter):
      name = counts.key(counts.DEAD_LETTER, dead_letter["reason"])
      counts.inc(name)
      return (name, 1)

    return dead_letters | "Count" >> beam.Map(count)
