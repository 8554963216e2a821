"""WriteShards and WriteDeadLetters: deterministic files, whatever the runner or workers.

Beam's own sinks place records in shards at random, so shards would differ run to run.
Here each record goes to shard `blake2b(bytes) % num_shards` (a stable hash), and inside a
shard records are sorted by that hash: a deterministic shuffle, not input order. Every
shard, even an empty one, is written to a temporary name and renamed into place, so a
reader never sees half a shard under its final name.
"""

import hashlib
import itertools
import json
import math
import os
import uuid
from typing import Iterable, List, Tuple

import apache_beam as beam
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


def _sort_key(serialized: bytes) -> bytes:
  return hashlib.blake2b(serialized, digest_size=8).digest()


def assign_to_shards(serialized: List[bytes], num_shards: int) -> Iterable[Tuple[int, List[Tuple[bytes, bytes]]]]:
  """One batch → (shard, [(sort key, record)]) pairs, one per shard it touches."""
  by_shard = {}
  for record in serialized:
    key = _sort_key(record)
    by_shard.setdefault(int.from_bytes(key, "little") % num_shards, []).append((key, record))
  return by_shard.items()


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
    records = sorted(itertools.chain.from_iterable(parts))
    name = contract.shard_name(self.split, shard, num_shards, self.compression)
    options = tf.io.TFRecordOptions(compression_type="GZIP" if self.compression == "gzip" else "")

    def write(path):
      with tf.io.TFRecordWriter(path, options) as writer:
        for _, record in records:
          writer.write(record)

    write_atomically(self.output_dir, os.path.join(self.output_dir, name), write)
    for count_name in (counts.key(counts.SHARD, name), counts.key(counts.WRITTEN, self.split)):
      counts.inc(count_name, len(records))
      yield (count_name, len(records))


class WriteShards(beam.PTransform):
  """Lists of serialized examples of one split → shard files; returns (name, n) counts."""

  def __init__(self, output_dir: str, split: str, num_shards: int, compression: str):
    super().__init__()
    self.output_dir, self.split = output_dir, split
    self.num_shards, self.compression = num_shards, compression

  def expand(self, serialized_lists):
    num_shards = (
        serialized_lists
        | "Bytes" >> beam.Map(lambda records: sum(len(r) for r in records))
        | "TotalBytes" >> beam.CombineGlobally(sum)
        | "ShardCount" >> beam.Map(lambda total: shard_count(self.num_shards, total)))
    num_shards = beam.pvalue.AsSingleton(num_shards)
    keyed = serialized_lists | "AssignShards" >> beam.FlatMap(assign_to_shards, num_shards)
    every_shard = (  # so that a shard that gets no record is still written, empty
        serialized_lists.pipeline
        | "One" >> beam.Create([None])
        | "EveryShard" >> beam.FlatMap(lambda _, n: [(i, []) for i in range(n)], num_shards))
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
