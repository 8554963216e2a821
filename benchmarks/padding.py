r"""Padding waste (padded slots / all slots) of batching strategies, one table per corpus.

The lengths are those of the train split in the order the trainer reads it (shard order, a
deterministic hash order: effectively shuffled). Strategies:

  pad to max              every sequence padded to the longest in the split
  dynamic, batch 64       consecutive batches of 64 padded to their own longest (the seed's dynamic_pad)
  16 DP-optimal buckets   the pipeline's boundaries (metadata.json), padded to the boundary
  trainer's real batches  `trainer.batches.measure` (16 buckets, token budget, filler rows included),
                          padded to the bucket boundary (--pad_multiple 0) or to the batch's longest
                          sequence rounded up to a multiple of N (--pad_multiple N)

Example:
  python -m benchmarks.padding --data_dir /tmp/rnn_bench/out/ours_1worker_100mb --data_dir /tmp/rnn_bench/out/demo_tag
"""

import os
import sys
from typing import Sequence

import quiet  # pylint: disable=unused-import  (first: before TensorFlow is imported)
import numpy as np
import tensorflow as tf

import contract
from benchmarks import common
from trainer import batches

BATCH = 64
NUM_BUCKETS = 16
TOKENS_PER_BATCH = 4096  # the trainer's default


def train_lengths(data_dir: str, metadata: contract.Metadata) -> np.ndarray:
  """Lengths of the train split in the order the trainer's input reads them (no shuffle)."""
  paths = contract.shard_paths(data_dir, metadata.raw, "train")
  context_spec = {contract.LENGTH: tf.io.FixedLenFeature([], tf.int64)}
  dataset = tf.data.TFRecordDataset(paths, compression_type=metadata.compression).batch(4096).map(
      lambda s: tf.io.parse_sequence_example(s, context_features=context_spec)[0][contract.LENGTH])
  return np.concatenate([batch.numpy() for batch in dataset])


def measure(data_dir: str, name: str) -> dict:
  metadata = contract.load_metadata(data_dir)
  lengths = train_lengths(data_dir, metadata)
  bounds = np.asarray(metadata.boundaries(NUM_BUCKETS))
  slots = {"pad to max": int(lengths.max()) * len(lengths),
           f"dynamic per batch of {BATCH} (input order)": sum(
               int(lengths[i:i + BATCH].max()) * len(lengths[i:i + BATCH]) for i in range(0, len(lengths), BATCH)),
           f"{NUM_BUCKETS} DP-optimal buckets (pipeline), pad to boundary": int(
               bounds[np.searchsorted(bounds, lengths, side="left")].sum())}
  waste = {strategy: 1 - lengths.sum() / n for strategy, n in slots.items()}
  for replicas, pad_multiple in ((1, 0), (2, 0), (2, 8), (2, 2), (2, 1)):
    result = batches.measure(data_dir, NUM_BUCKETS, TOKENS_PER_BATCH, replicas, pad_multiple=pad_multiple)
    waste[f"trainer's real batches ({replicas} replica{'s' if replicas > 1 else ''}, --pad_multiple {pad_multiple}"
          f"{' (the default)' if pad_multiple == batches.DEFAULT_PAD_MULTIPLE else ''}: "
          f"{result['shapes']} shapes)"] = result["padding_waste"]
  return {"corpus": name, "data_dir": data_dir, "examples": len(lengths), "tokens": int(lengths.sum()),
          "max_length": int(lengths.max()), "mean_length": round(float(lengths.mean()), 2),
          "waste": {strategy: round(float(w), 4) for strategy, w in waste.items()}}


def print_tables(results: Sequence[dict]) -> str:
  text = ""
  for result in results:
    pad_to_max = result["waste"]["pad to max"]
    rows = [(strategy, f"{100 * w:.1f}%", f"{(1 - pad_to_max) / (1 - w):.2f}")
            for strategy, w in result["waste"].items()]
    text += common.report(
        f"Padding waste, {result['corpus']} ({result['examples']:,} train sequences, mean length "
        f"{result['mean_length']}, max {result['max_length']})", rows,
        ["strategy", "padding waste", "slots vs pad to max"])
  return text


def main(argv=None):
  return common.main(__doc__, lambda args: [measure(d, os.path.basename(d.rstrip("/"))) for d in args.data_dir],
                     print_tables, (["--data_dir"], {"action": "append", "required": True,
                                                      "help": "an OUTPUT_DIR of pipeline.preprocess"}), argv=argv)


if __name__ == "__main__":
  sys.exit(main())
