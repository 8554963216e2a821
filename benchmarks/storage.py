r"""Storage: bytes per token of the shards, without and with `--compression gzip`.

Bytes are all shard files of both splits (TFRecord framing included); tokens are those of
metadata.json. For reference, the same records re-encoded as one packed `Int64List` per
sequence (a tf.train.Example; not the contract's format, which has one Feature per step)
show what the per-step Feature costs.

Example:
  python -m benchmarks.storage --corpus_mb 10
"""

import argparse
import logging
import os
import shutil
import sys
from typing import Optional

from benchmarks import common
from benchmarks import corpus
from benchmarks import pipeline_throughput


def shard_bytes(data_dir: str) -> int:
  return sum(os.path.getsize(os.path.join(data_dir, name)) for name in os.listdir(data_dir)
             if ".tfrecord" in name)


def _packed_reference(data_dir: str, scratch_dir: str) -> dict:
  """Bytes of the same sequences as one packed Int64List each, as TFRecords plain and gzipped."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import contract  # pylint: disable=g-import-not-at-top
  metadata = contract.read_metadata(data_dir)
  context_spec, sequence_spec = contract.parsing_spec("lm")
  os.makedirs(scratch_dir, exist_ok=True)
  paths = {"none": os.path.join(scratch_dir, "packed.tfrecord"),
           "gzip": os.path.join(scratch_dir, "packed.tfrecord.gz")}
  writers = {c: tf.io.TFRecordWriter(p, tf.io.TFRecordOptions(compression_type="GZIP" if c == "gzip" else ""))
             for c, p in paths.items()}
  for split in contract.SPLITS:
    shards = contract.shard_paths(data_dir, metadata, split)
    dataset = tf.data.TFRecordDataset(shards, compression_type=contract.compression_type(metadata)).batch(1024)
    for batch in dataset.map(lambda s: tf.io.parse_sequence_example(s, context_spec, sequence_spec)):
      tokens, lengths = batch[1][contract.TOKENS].numpy(), batch[0][contract.LENGTH].numpy()
      for row, length in zip(tokens, lengths):
        example = tf.train.Example()
        example.features.feature[contract.TOKENS].int64_list.value.extend(row[:length].tolist())
        record = example.SerializeToString(deterministic=True)
        for writer in writers.values():
          writer.write(record)
  for writer in writers.values():
    writer.close()
  sizes = {c: os.path.getsize(p) for c, p in paths.items()}
  shutil.rmtree(scratch_dir)
  return sizes


def measure(corpus_mb: float = 10, plain_dir: Optional[str] = None, work: Optional[str] = None) -> dict:
  """Bytes per token of our shards at `corpus_mb`; runs the pipeline where no output is given."""
  work = common.work_dir(work)
  corpus_path = corpus.build(corpus_mb)["path"]
  results = {"corpus_mb": corpus_mb}
  dirs = {"none": plain_dir, "gzip": None}
  for compression, data_dir in dirs.items():
    timing = None
    if data_dir is None:
      data_dir = os.path.join(work, "out", f"storage_{compression}_{corpus_mb:g}mb")
      if os.path.exists(data_dir):
        shutil.rmtree(data_dir)
      argv = pipeline_throughput.command("ours_1worker", corpus_path, data_dir, ["--compression", compression])
      timing = common.run_timed(argv, os.path.join(work, "logs", f"storage_{compression}.log"))
    metadata = common.read_json(os.path.join(data_dir, "metadata.json"))
    tokens = sum(metadata["splits"][s]["tokens"] for s in ("train", "eval"))
    examples = sum(metadata["splits"][s]["examples"] for s in ("train", "eval"))
    size = shard_bytes(data_dir)
    results[compression] = {"data_dir": data_dir, "bytes": size, "tokens": tokens, "examples": examples,
                            "bytes_per_token": round(size / tokens, 3), "run": timing}
  packed = _packed_reference(results["none"]["data_dir"], os.path.join(work, "out", "packed_reference"))
  tokens = results["none"]["tokens"]
  results["packed_reference"] = {"bytes_per_token": round(packed["none"] / tokens, 3),
                                 "gzip_bytes_per_token": round(packed["gzip"] / tokens, 3)}
  return results


def print_tables(results: dict) -> str:
  none, gz, packed = results["none"], results["gzip"], results["packed_reference"]
  rows = [("shards, --compression none (contract: one Feature per token)", f"{none['bytes']:,}",
           f"{none['bytes_per_token']:.2f}", "1.00"),
          ("shards, --compression gzip", f"{gz['bytes']:,}", f"{gz['bytes_per_token']:.2f}",
           f"{gz['bytes_per_token'] / none['bytes_per_token']:.2f}"),
          ("reference: one packed Int64List per sequence, plain", "", f"{packed['bytes_per_token']:.2f}",
           f"{packed['bytes_per_token'] / none['bytes_per_token']:.2f}"),
          ("reference: one packed Int64List per sequence, gzip", "", f"{packed['gzip_bytes_per_token']:.2f}",
           f"{packed['gzip_bytes_per_token'] / none['bytes_per_token']:.2f}")]
  return common.report(f"Storage, {results['corpus_mb']:g} MB corpus ({none['tokens']:,} tokens, "
                       f"{none['examples']:,} sequences)", rows, ["output", "bytes", "bytes/token", "vs none"])


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.storage", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--corpus_mb", type=float, default=10)
  parser.add_argument("--plain_dir", default=None,
                      help="an existing uncompressed OUTPUT_DIR of the same corpus (else the pipeline runs)")
  parser.add_argument("--out", default=None)
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO)
  results = measure(args.corpus_mb, args.plain_dir)
  print_tables(results)
  if args.out:
    common.write_json(args.out, results)


if __name__ == "__main__":
  sys.exit(main())
