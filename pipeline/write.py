"""WriteShards and WriteDeadLetters: deterministic files, whatever the runner or workers.

Beam's own sinks place records in shards at random, so shards would differ run to run.
Here each record goes to shard `fingerprint(bytes) % num_shards` (FarmHash Fingerprint64,
stable across processes and machines, computed a batch at a time in TF), and inside a
shard records are sorted by that fingerprint, then by their bytes: a deterministic
shuffle, not input order. Every shard, even an empty one, is written to a temporary name
and renamed into place, so a reader never sees half a shard under its final name.
"""

import json
import math
import os
import uuid
from typing import Iterable, Sequence, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf

import contract
from pipeline import counts

TARGET_SHARD_BYTES = 128 << 20  # automatic shard count: shards of roughly 100-200 MB
TEMP_DIR = ".tmp"  # under OUTPUT_DIR; removed when the job finishes
DEAD_LETTER_FILE = "dead_letter.jsonl"


def shard_count(requested: int, total_bytes: int) -> int:
  if requested > 0:
    return requested
  return max(1, math.ceil(total_bytes / TARGET_SHARD_BYTES))


def sort_keys(records: np.ndarray) -> np.ndarray:
  """[n] bytes → [n] uint64 stable fingerprints (the same on every machine and run)."""
  if not len(records):
    return np.zeros(0, np.uint64)
  fingerprints = tf.fingerprint(tf.constant(records, tf.string)).numpy()  # [n, 8] little-endian
  return fingerprints.view("<u8").reshape(-1).astype(np.uint64)


def assign_to_shards(serialized: Sequence[bytes], num_shards: int) -> Iterable[Tuple[int, Tuple[np.ndarray, np.ndarray]]]:
  """One batch → (shard, (sort keys, records)) pairs, one per shard it touches."""
  records = np.asarray(serialized, dtype=object).reshape(-1)
  keys = sort_keys(records)
  shards = keys % np.uint64(num_shards)
  order = np.argsort(shards, kind="stable")
  for part in np.split(order, np.flatnonzero(np.diff(shards[order])) + 1):
    if part.size:
      yield int(shards[part[0]]), (keys[part], records[part])


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


class _WriteShardDoFn(beam.DoFn):

  def __init__(self, output_dir: str, split: str, compression: str):
    self.output_dir, self.split, self.compression = output_dir, split, compression

  def process(self, shard_and_parts, num_shards: int):
    shard, parts = shard_and_parts
    parts = [part for part in parts if part is not None]  # None: the marker of every shard
    keys = np.concatenate([keys for keys, _ in parts] or [np.zeros(0, np.uint64)])
    records = np.concatenate([records for _, records in parts] or [np.zeros(0, object)])
    records = records[record_order(keys, records)]
    name = contract.shard_name(self.split, shard, num_shards, self.compression)
    options = tf.io.TFRecordOptions(compression_type="GZIP" if self.compression == "gzip" else "")

    def write(path):
      with tf.io.TFRecordWriter(path, options) as writer:
        for record in records:
          writer.write(record)

    write_atomically(self.output_dir, os.path.join(self.output_dir, name), write)
    for count_name in (counts.key(counts.SHARD, name), counts.key(counts.WRITTEN, self.split)):
      counts.inc(count_name, len(records))
      yield (count_name, len(records))


class WriteShards(beam.PTransform):
  """Batches (sequences) of serialized examples of one split → shard files; returns (name, n) counts."""

  def __init__(self, output_dir: str, split: str, num_shards: int, compression: str):
    super().__init__()
    self.output_dir, self.split = output_dir, split
    self.num_shards, self.compression = num_shards, compression

  def expand(self, serialized_lists):
    num_shards = (
        serialized_lists
        | "Bytes" >> beam.Map(lambda records: sum(map(len, records)))
        | "TotalBytes" >> beam.CombineGlobally(sum)
        | "ShardCount" >> beam.Map(lambda total: shard_count(self.num_shards, total)))
    num_shards = beam.pvalue.AsSingleton(num_shards)
    keyed = serialized_lists | "AssignShards" >> beam.FlatMap(assign_to_shards, num_shards)
    every_shard = (  # so that a shard that gets no record is still written, empty
        serialized_lists.pipeline
        | "One" >> beam.Create([None])
        | "EveryShard" >> beam.FlatMap(lambda _, n: [(i, None) for i in range(n)], num_shards))
    return (
        (keyed, every_shard)
        | "Flatten" >> beam.Flatten()
        | "GroupByShard" >> beam.GroupByKey()
        | "Write" >> beam.ParDo(_WriteShardDoFn(self.output_dir, self.split, self.compression), num_shards))


def _dead_letter_line(dead_letter: dict) -> str:
  return json.dumps(dead_letter, ensure_ascii=False, sort_keys=True)


def _write_dead_letters(output_dir: str, lines: Iterable[str]) -> None:
  lines = sorted(lines)
  path = os.path.join(output_dir, contract.ERRORS_DIR, DEAD_LETTER_FILE)
  tf.io.gfile.makedirs(os.path.dirname(path))

  def write(temp_path):
    with tf.io.gfile.GFile(temp_path, "w") as f:
      f.write("".join(line + "\n" for line in lines))

  write_atomically(output_dir, path, write)


class WriteDeadLetters(beam.PTransform):
  """Dead-letter dicts → errors/dead_letter.jsonl (sorted); returns (name, n) counts."""

  def __init__(self, output_dir: str):
    super().__init__()
    self.output_dir = output_dir

  def expand(self, dead_letters):
    lines = dead_letters | "ToJson" >> beam.Map(lambda d: (0, _dead_letter_line(d)))
    always = dead_letters.pipeline | "Always" >> beam.Create([(0, None)])  # write even when empty
    _ = (
        (lines, always)
        | "Flatten" >> beam.Flatten()
        | "Gather" >> beam.GroupByKey()
        | "Write" >> beam.Map(lambda kv: _write_dead_letters(self.output_dir, [l for l in kv[1] if l])))

    def count(dead_letter):
      name = counts.key(counts.DEAD_LETTER, dead_letter["reason"])
      counts.inc(name)
      return (name, 1)

    return dead_letters | "Count" >> beam.Map(count)
