r"""Micro-benchmarks of single pipeline stages, each against a candidate replacement.

They isolate what the profile points at, on real batches of the prose corpus:

  to_record_batch   pipeline.read.to_record_batch (one Python list per record and column)
                    with the garbage collector as it is in a process that imported TF, Beam
                    and TFT; with those objects frozen (`gc.freeze()`); and a vectorised
                    build (one flat values array + offsets per column). Same RecordBatch.
  encode            serializing SequenceExamples: pipeline.encode (per-id tables of each
                    step's bytes, one numpy gather per batch, `tf.io.encode_proto` for the
                    per-example layers), the pipeline's encoder before it (`encode_proto`
                    for every step, in the graph), the Python protobuf API
                    (`SerializeToString(deterministic=True)`, the hand-written baseline),
                    and byte assembly from the same per-id table in Python, per record,
                    with and without numpy gathers. All are checked byte-identical to the
                    shards.
  hashing           the stable per-item hashes: blake2b in Python (the split key, kept so
                    splits do not change; it was also the shard order and the vocabulary
                    partition) against zlib.crc32 (stable, C) and tf.fingerprint on a whole
                    batch (FarmHash, documented stable: now the shard order; the partition
                    is tf.strings.to_hash_bucket_fast, the same hash).

Example:
  python -m benchmarks.micro --corpus_mb 10
"""

import argparse
import gc
import logging
import os
import sys
import time
from typing import Dict, List

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=g-import-not-at-top
import pyarrow as pa

from benchmarks import common
from benchmarks import corpus

BATCH = 4096


# --- a vectorised to_record_batch ------------------------------------------------------


def vectorized_record_batch(records, task: str) -> pa.RecordBatch:
  """pipeline.read.to_record_batch without a Python list per record: offsets + flat values."""
  from pipeline import read  # pylint: disable=g-import-not-at-top
  import contract  # pylint: disable=g-import-not-at-top
  n = len(records)

  def one_per_row(values: List[bytes]) -> pa.Array:
    return pa.LargeListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int64)),
                                         pa.array(values, pa.large_binary()))

  def many_per_row(rows) -> pa.Array:
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, rows), dtype=np.int64, count=n), out=offsets[1:])
    values = [item.encode("utf-8") for row in rows for item in row]
    return pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values, pa.large_binary()))

  builders = {
      "text": lambda: one_per_row([r.text.encode("utf-8") for r in records]),
      "tokens": lambda: many_per_row([r.tokens for r in records]),
      "labels": lambda: many_per_row([r.labels for r in records]),
      "label": lambda: one_per_row([r.label.encode("utf-8") for r in records]),
  }
  arrays = [builders[name]() for name in contract.raw_columns(task)]
  arrays.append(pa.array([read.content_key(r) for r in records], pa.uint64()))
  return pa.record_batch(arrays, schema=read.arrow_schema(task))


# --- SequenceExamples by byte assembly -------------------------------------------------


def _varint(value: int) -> bytes:
  out = bytearray()
  while True:
    byte = value & 0x7F
    value >>= 7
    if value:
      out.append(byte | 0x80)
    else:
      out.append(byte)
      return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
  """A length-delimited field (wire type 2)."""
  return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _int64_feature(value: int) -> bytes:
  """Serialized Feature{int64_list{value: [value]}} (value >= 0)."""
  return _field(3, _field(1, _varint(value)))  # Feature.int64_list = 3; Int64List.value = 1, packed


class TableEncoder:
  """SequenceExamples (context int64 scalars, int64 feature lists) by concatenating bytes.

  Equal to `SerializeToString(deterministic=True)`: fields in number order, map entries
  sorted by key, each token's `FeatureList.feature` entry looked up by id in a table
  that grows on demand.
  """

  def __init__(self):
    self.table: List[bytes] = []

  def _grow(self, max_id: int) -> None:
    for token_id in range(len(self.table), max_id + 1):
      self.table.append(_field(1, _int64_feature(token_id)))  # FeatureList.feature = 1

  def encode(self, context: Dict[str, np.ndarray], sequences: Dict[str, tuple]) -> List[bytes]:
    """context: name → [n] int64; sequences: name → (flat ids, row offsets)."""
    for flat, _ in sequences.values():
      if len(flat):
        self._grow(int(flat.max()))
    table = self.table
    n = len(next(iter(context.values())))
    context_keys = sorted(context)
    sequence_keys = sorted(sequences)
    columns = {k: context[k].tolist() for k in context_keys}
    lists = {k: (sequences[k][0].tolist(), sequences[k][1].tolist()) for k in sequence_keys}
    out = []
    for row in range(n):
      features = b"".join(_field(1, _field(1, k.encode()) + _field(2, _int64_feature(columns[k][row])))
                          for k in context_keys)
      feature_lists = b""
      for k in sequence_keys:
        flat, offsets = lists[k]
        body = b"".join([table[i] for i in flat[offsets[row]:offsets[row + 1]]])
        feature_lists += _field(1, _field(1, k.encode()) + _field(2, body))
      out.append(_field(1, features) + _field(2, feature_lists))
    return out


class VectorizedEncoder(TableEncoder):
  """TableEncoder with the per-token work done by numpy gathers on a flat byte table.

  Only the few header bytes of each record are assembled in Python; the token bytes of a
  whole batch come from one fancy-indexing gather, and each record takes a slice.
  """

  def __init__(self):
    super().__init__()
    self._flat = np.zeros(0, np.uint8)
    self._starts = np.zeros(0, np.int64)
    self._lengths = np.zeros(0, np.int64)

  def _grow(self, max_id: int) -> None:
    if max_id < len(self.table):
      return
    super()._grow(max_id)
    self._lengths = np.fromiter(map(len, self.table), np.int64, len(self.table))
    self._starts = np.concatenate([[0], np.cumsum(self._lengths)[:-1]])
    self._flat = np.frombuffer(b"".join(self.table), np.uint8)

  def _token_bytes(self, flat_ids: np.ndarray, offsets: np.ndarray):
    """(bytes of all tokens' FeatureList entries, byte offset of each record's first)."""
    lengths = self._lengths[flat_ids]
    ends = np.cumsum(lengths)
    index = np.repeat(self._starts[flat_ids] - (ends - lengths), lengths) + np.arange(ends[-1] if len(ends) else 0)
    record_offsets = np.concatenate([[0], ends])[offsets]
    return self._flat[index].tobytes(), record_offsets.tolist()

  def encode(self, context: Dict[str, np.ndarray], sequences: Dict[str, tuple]) -> List[bytes]:
    for flat, _ in sequences.values():
      if len(flat):
        self._grow(int(flat.max()))
    n = len(next(iter(context.values())))
    context_keys = sorted(context)
    sequence_keys = sorted(sequences)
    columns = {k: context[k].tolist() for k in context_keys}
    bodies = {k: self._token_bytes(*sequences[k]) for k in sequence_keys}
    key_fields = {k: _field(1, k.encode()) for k in context_keys + sequence_keys}
    out = []
    for row in range(n):
      features = b"".join(_field(1, key_fields[k] + _field(2, _int64_feature(columns[k][row])))
                          for k in context_keys)
      feature_lists = b""
      for k in sequence_keys:
        data, starts = bodies[k]
        feature_lists += _field(1, key_fields[k] + _field(2, data[starts[row]:starts[row + 1]]))
      out.append(_field(1, features) + _field(2, feature_lists))
    return out


def protobuf_encode(context: Dict[str, np.ndarray], sequences: Dict[str, tuple]) -> List[bytes]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  n = len(next(iter(context.values())))
  out = []
  for row in range(n):
    example = tf.train.SequenceExample()
    for k, v in context.items():
      example.context.feature[k].int64_list.value.append(int(v[row]))
    for k, (flat, offsets) in sequences.items():
      features = example.feature_lists.feature_list[k].feature
      for token_id in flat[offsets[row]:offsets[row + 1]].tolist():
        features.add().int64_list.value.append(token_id)
    out.append(example.SerializeToString(deterministic=True))
  return out


# --- the measurements ------------------------------------------------------------------


def _timed(fn, batches) -> float:
  start = time.perf_counter()
  for batch in batches:
    fn(batch)
  return time.perf_counter() - start


def measure_record_batches(corpus_path: str, num_batches: int = 10) -> dict:
  import tensorflow  # noqa: F401 pylint: disable=g-import-not-at-top,unused-import
  import tensorflow_transform  # noqa: F401 pylint: disable=g-import-not-at-top,unused-import
  import apache_beam  # noqa: F401 pylint: disable=g-import-not-at-top,unused-import
  from pipeline import read  # pylint: disable=g-import-not-at-top
  with open(corpus_path, "rb") as f:
    lines = [f.readline().rstrip(b"\n") for _ in range(BATCH * num_batches)]
  records = [read.parse_text_line(line, "lm") for line in lines if line.strip()]
  batches = [records[i:i + BATCH] for i in range(0, len(records), BATCH)]
  for batch in batches:
    assert vectorized_record_batch(batch, "lm").equals(read.to_record_batch(batch, "lm"))
  tracked = len(gc.get_objects())
  current = _timed(lambda b: read.to_record_batch(b, "lm"), batches)
  vectorized = _timed(lambda b: vectorized_record_batch(b, "lm"), batches)
  gc.freeze()
  frozen = _timed(lambda b: read.to_record_batch(b, "lm"), batches)
  gc.unfreeze()
  records_count = len(records)
  return {"records": records_count, "gc_tracked_objects": tracked,
          "us_per_record": {"current": round(1e6 * current / records_count, 2),
                            "current_after_gc_freeze": round(1e6 * frozen / records_count, 2),
                            "vectorized": round(1e6 * vectorized / records_count, 2)}}


def measure_encode(data_dir: str, num_batches: int = 8) -> dict:
  """Encodes the first batches of a finished OUTPUT_DIR's train split three ways."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import contract  # pylint: disable=g-import-not-at-top
  from pipeline import encode  # pylint: disable=g-import-not-at-top
  metadata = contract.read_metadata(data_dir)
  context_spec, sequence_spec = contract.parsing_spec("lm")
  dataset = tf.data.TFRecordDataset(contract.shard_paths(data_dir, metadata, "train")).batch(BATCH)
  batches = []
  for serialized in dataset.take(num_batches):
    context, sequences, _ = tf.io.parse_sequence_example(serialized, context_spec, sequence_spec)
    lengths = context[contract.LENGTH].numpy()
    ragged = tf.RaggedTensor.from_tensor(sequences[contract.TOKENS], lengths=lengths)
    offsets = ragged.row_splits.numpy()
    flat = ragged.flat_values.numpy()
    batches.append(({contract.LENGTH: lengths}, {contract.TOKENS: (flat, offsets)}, serialized.numpy().tolist()))
  tokens = sum(len(b[1][contract.TOKENS][0]) for b in batches)

  pipeline_encoder = encode.Encoder.for_task("lm")

  def tables(batch):
    return pipeline_encoder(batch[0], batch[1]).tolist()

  @tf.function(autograph=False)
  def per_step_graph(context, sequences):  # the pipeline's encoder before the tables
    features = tf.strings.join([encode.context_records(k, context[k]) for k in sorted(context)])
    lists = {k: tf.strings.reduce_join(v.with_flat_values(encode.step_records(v.flat_values)), axis=-1)
             for k, v in sequences.items()}
    return encode.assemble(features, lists)

  def in_graph(batch):
    context, sequences, _ = batch
    ragged = {k: tf.RaggedTensor.from_row_splits(flat, offsets, validate=False)
              for k, (flat, offsets) in sequences.items()}
    return per_step_graph(context, ragged).numpy().tolist()

  table = TableEncoder()
  vectorized = VectorizedEncoder()
  for batch in batches:  # all of them must give the bytes the pipeline wrote
    assert tables(batch) == batch[2]
    assert in_graph(batch) == batch[2]
    assert protobuf_encode(batch[0], batch[1]) == batch[2]
    assert table.encode(batch[0], batch[1]) == batch[2]
    assert vectorized.encode(batch[0], batch[1]) == batch[2]
  in_graph(batches[0])  # traced
  results = {}
  for name, fn in (("pipeline.encode: per-id tables, numpy gather, encode_proto per example", tables),
                   ("in-graph tf.io.encode_proto per step (the pipeline before)", in_graph),
                   ("Python protobuf API (hand-written baseline)", lambda b: protobuf_encode(b[0], b[1])),
                   ("byte assembly from a per-id table", lambda b: table.encode(b[0], b[1])),
                   ("same, token bytes gathered by numpy", lambda b: vectorized.encode(b[0], b[1]))):
    seconds = _timed(fn, batches)
    results[name] = round(tokens / seconds)
  return {"tokens": tokens, "records": sum(len(b[2]) for b in batches), "tokens_per_s": results,
          "byte_identical": True}


def measure_hashing(corpus_path: str, num_items: int = 200_000) -> dict:
  """Items/s of stable hashes over prose lines, per item in Python or per batch in TF."""
  import hashlib  # pylint: disable=g-import-not-at-top
  import zlib  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with open(corpus_path, "rb") as f:
    items = [f.readline().rstrip(b"\n") for _ in range(num_items)]
  batches = [items[i:i + BATCH] for i in range(0, len(items), BATCH)]
  tensors = [tf.constant(b) for b in batches]
  tf.fingerprint(tensors[0])  # warm up

  def blake2b(batch):
    return [int.from_bytes(hashlib.blake2b(x, digest_size=8).digest(), "little") for x in batch]

  def crc32(batch):
    return [zlib.crc32(x) for x in batch]

  results = {}
  for name, fn, data in (("hashlib.blake2b per item (the split key)", blake2b, batches),
                         ("zlib.crc32 per item", crc32, batches),
                         ("tf.fingerprint per batch of 4096", lambda t: tf.fingerprint(t).numpy(), tensors)):
    results[name] = round(len(items) / _timed(fn, data))
  return {"items": len(items), "items_per_s": results}


def print_tables(results: dict) -> str:
  rb = results["record_batches"]
  text = common.report(
      f"Micro: building the read stage's RecordBatches ({rb['records']:,} prose records, "
      f"{rb['gc_tracked_objects']:,} GC-tracked objects after importing TF, Beam, TFT)",
      [(name, f"{us:.2f}") for name, us in rb["us_per_record"].items()], ["to_record_batch", "µs per record"])
  enc = results["encode"]
  base = enc["tokens_per_s"]["in-graph tf.io.encode_proto per step (the pipeline before)"]
  text += common.report(
      f"Micro: serializing SequenceExamples ({enc['tokens']:,} tokens, {enc['records']:,} records; "
      "all byte-identical to the shards)",
      [(name, f"{v:,}", f"{v / base:.1f}x") for name, v in enc["tokens_per_s"].items()],
      ["encoder", "tokens/s (1 thread of Python)", "vs encode_proto per step"])
  if "hashing" in results:
    h = results["hashing"]
    base = next(iter(h["items_per_s"].values()))
    text += common.report(f"Micro: stable hashes over {h['items']:,} prose lines",
                          [(name, f"{v:,}", f"{v / base:.1f}x") for name, v in h["items_per_s"].items()],
                          ["hash", "items/s", "vs blake2b"])
  return text


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.micro", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--corpus_mb", type=float, default=10)
  parser.add_argument("--data_dir", default=None, help="an lm OUTPUT_DIR to take encode batches from "
                      "(default: run the pipeline on the corpus)")
  parser.add_argument("--out", default=None)
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO)
  corpus_path = corpus.build(args.corpus_mb)["path"]
  data_dir = args.data_dir
  if data_dir is None:
    data_dir = os.path.join(common.work_dir(), "out", f"micro_{args.corpus_mb:g}mb")
    common.run_timed(common.python_module(
        "pipeline.preprocess", "--input", corpus_path, "--output_dir", data_dir, "--format", "text", "--task", "lm",
        "--overwrite", "--direct_num_workers", 1))
  results = {"encode": measure_encode(data_dir), "record_batches": measure_record_batches(corpus_path),
             "hashing": measure_hashing(corpus_path)}
  print_tables(results)
  if args.out:
    common.write_json(args.out, results)


if __name__ == "__main__":
  sys.exit(main())
