r"""Padding waste (padded slots / all slots) of batching strategies, one table per corpus.

The lengths are those of the train split as the trainer reads it (shard order, which the
pipeline makes a deterministic hash order, i.e. effectively shuffled). Strategies:

  pad to max              every sequence padded to the longest in the split
  dynamic, batch 64       consecutive batches of 64 padded to their own longest (the seed's dynamic_pad)
  16 quantile buckets     boundaries at the 1/16 quantiles; padded to the boundary, or per batch of 64
  16 DP-optimal buckets   the pipeline's boundaries (metadata.json), padded to the boundary
  trainer's real batches  `trainer.batches.measure` (16 buckets, token budget, filler rows included),
                          padded to the bucket boundary (--pad_multiple 0) or, with --pad_multiple N
                          (default 2), to the batch's longest sequence rounded up to N (the trainer
                          sorts a pool's rows by length within a bucket: a batch is of like lengths)

Example:
  python -m benchmarks.padding --data_dir /tmp/rnn_bench/out/ours_100mb --data_dir /tmp/rnn_bench/out/demo_tag
"""

import argparse
import logging
import os
import sys
from typing import List, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=g-import-not-at-top

from benchmarks import common

BATCH = 64
NUM_BUCKETS = 16
TOKENS_PER_BATCH = 4096  # the trainer's default


def train_lengths(data_dir: str) -> np.ndarray:
  """Lengths of the train split in the order the trainer's input reads them (no shuffle)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import contract  # pylint: disable=g-import-not-at-top
  metadata = contract.read_metadata(data_dir)
  paths = contract.shard_paths(data_dir, metadata, "train")
  dataset = tf.data.TFRecordDataset(paths, compression_type=contract.compression_type(metadata)).batch(4096)
  context_spec = {contract.LENGTH: tf.io.FixedLenFeature([], tf.int64)}
  dataset = dataset.map(lambda s: tf.io.parse_sequence_example(s, context_features=context_spec)[0][contract.LENGTH])
  return np.concatenate([batch.numpy() for batch in dataset])


def waste(real: int, slots: int) -> float:
  return (slots - real) / slots if slots else 0.0


def pad_to_boundaries(lengths: np.ndarray, boundaries: Sequence[int]) -> int:
  """Slots when each length is padded to the smallest boundary >= it."""
  bounds = np.asarray(sorted(boundaries))
  return int(bounds[np.searchsorted(bounds, lengths, side="left")].sum())


def dynamic_batches(lengths: np.ndarray, batch: int = BATCH) -> int:
  """Slots when consecutive batches are padded to their longest."""
  slots = 0
  for start in range(0, len(lengths), batch):
    chunk = lengths[start:start + batch]
    slots += int(chunk.max()) * len(chunk)
  return slots


def quantile_boundaries(lengths: np.ndarray, num_buckets: int = NUM_BUCKETS) -> List[int]:
  quantiles = np.quantile(lengths, np.arange(1, num_buckets + 1) / num_buckets, method="higher")
  return sorted(set(int(q) for q in quantiles) | {int(lengths.max())})


def bucketed_dynamic(lengths: np.ndarray, boundaries: Sequence[int], batch: int = BATCH) -> int:
  """Slots when each bucket is batched in input order, each batch padded to its longest."""
  bounds = np.asarray(sorted(boundaries))
  bucket_of = np.searchsorted(bounds, lengths, side="left")
  return sum(dynamic_batches(lengths[bucket_of == b], batch) for b in range(len(bounds)))


def measure(data_dir: str, name: str) -> dict:
  import contract  # pylint: disable=g-import-not-at-top
  from trainer import batches  # pylint: disable=g-import-not-at-top
  metadata = contract.read_metadata(data_dir)
  lengths = train_lengths(data_dir)
  real = int(lengths.sum())
  quantiles = quantile_boundaries(lengths)
  optimal = metadata["bucket_boundaries"][str(NUM_BUCKETS)]["boundaries"]
  rows = {
      "pad to max": waste(real, int(lengths.max()) * len(lengths)),
      f"dynamic per batch of {BATCH} (input order)": waste(real, dynamic_batches(lengths)),
      f"{NUM_BUCKETS} quantile buckets, pad per batch of {BATCH}": waste(real, bucketed_dynamic(lengths, quantiles)),
      f"{NUM_BUCKETS} quantile buckets, pad to boundary": waste(real, pad_to_boundaries(lengths, quantiles)),
      f"{NUM_BUCKETS} DP-optimal buckets (pipeline), pad to boundary": waste(real, pad_to_boundaries(lengths, optimal)),
  }
  trainer_runs = {}
  for replicas, pad_multiple in ((1, 0), (2, 0), (2, 8), (2, 2), (2, 1)):
    result = batches.measure(data_dir, NUM_BUCKETS, TOKENS_PER_BATCH, replicas, pad_multiple=pad_multiple)
    padding = f"--pad_multiple {pad_multiple}" if pad_multiple else "--pad_multiple 0, pad to boundary"
    if pad_multiple == batches.DEFAULT_PAD_MULTIPLE:
      padding += " (the default)"
    rows[f"trainer's real batches ({NUM_BUCKETS} buckets, {TOKENS_PER_BATCH} tokens, {replicas} replica"
         f"{'s' if replicas > 1 else ''}, {padding}: {result['shapes']} shapes)"] = result["padding_waste"]
    trainer_runs[f"{replicas}_{pad_multiple}"] = result
  return {"corpus": name, "data_dir": data_dir, "examples": len(lengths), "tokens": real,
          "max_length": int(lengths.max()), "mean_length": round(float(lengths.mean()), 2),
          "quantile_boundaries": quantiles, "optimal_boundaries": optimal,
          "metadata_padding_waste_16": metadata["bucket_boundaries"][str(NUM_BUCKETS)]["padding_waste"],
          "waste": {k: round(v, 4) for k, v in rows.items()}, "trainer_batches": trainer_runs}


def print_tables(results: Sequence[dict]) -> str:
  text = ""
  for result in results:
    pad_to_max = result["waste"]["pad to max"]
    rows = [(strategy, f"{100 * w:.1f}%", f"{(1 - pad_to_max) / (1 - w):.2f}" if w < 1 else "-")
            for strategy, w in result["waste"].items()]
    text += common.report(
        f"Padding waste, {result['corpus']} ({result['examples']:,} train sequences, mean length "
        f"{result['mean_length']}, max {result['max_length']})", rows,
        ["strategy", "padding waste", "slots vs pad to max"])
  return text


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.padding", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--data_dir", action="append", required=True, help="an OUTPUT_DIR of pipeline.preprocess")
  parser.add_argument("--out", default=None)
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO)
  results = [measure(d, os.path.basename(d.rstrip("/"))) for d in args.data_dir]
  print_tables(results)
  if args.out:
    common.write_json(args.out, results)


if __name__ == "__main__":
  sys.exit(main())
