r"""Iterates the real training input pipeline once and reports its batches, to tune bucketing
before spending GPU hours.

Example:
  python -m trainer.batches --data_dir out/ner --num_buckets 16 --tokens_per_batch 8192 --cpu_replicas 2

The last line printed is one JSON object: examples, tokens, batches (global batches),
shapes (distinct padded shapes), padding_waste (padded slots / all slots, filler rows
included), examples_per_s, dropped (always 0: no example is dropped) and parser (the
native record parser of trainer/ops, or tf.io.parse_sequence_example without it).
"""

import argparse
import json
import logging
import sys
import time
from typing import Optional, Sequence

import quiet  # pylint: disable=unused-import  (first: before TensorFlow is imported)
import contract
from trainer.config import DEFAULT_PAD_MULTIPLE
from trainer.task import add_data_flags


def measure(data_dir: str, num_buckets: int, tokens_per_batch: int, replicas: int, split: str = "train",
            pad_multiple: int = DEFAULT_PAD_MULTIPLE, native: Optional[bool] = None) -> dict:
  """One pass over a split through exactly the trainer's input pipeline (no shuffle, no repeat).

  `native` chooses the record parser as in `trainer.data.parse_ragged` (default: the
  trainer's choice, the native parser if it is available).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from trainer import data  # pylint: disable=g-import-not-at-top
  from trainer import ops  # pylint: disable=g-import-not-at-top
  if native is None:
    native = ops.available()
  metadata = contract.load_metadata(data_dir)
  spec = data.bucket_spec(metadata, num_buckets, tokens_per_batch, replicas, pad_multiple)
  dataset = data.make_dataset(contract.shard_paths(data_dir, metadata.raw, split), metadata.task, spec, replicas,
                              training=False, compression=metadata.compression, native=native)

  def summary(batch):  # examples, tokens, rows, width
    shape = tf.cast(tf.shape(batch[contract.TOKENS]), tf.float32)
    weights = batch[data.WEIGHT]
    return tf.stack([tf.reduce_sum(weights), tf.reduce_sum(tf.cast(batch[contract.LENGTH], tf.float32) * weights),
                     shape[0], shape[1]])

  # One small vector per replica batch, computed in the input pipeline's own runtime and
  # fetched a thousand at a time, so that Python does not slow down what it measures.
  summaries = dataset.map(summary).batch(1024)
  examples = tokens = slots = elements = 0
  shapes = set()
  start = time.perf_counter()
  for chunk in summaries.as_numpy_iterator():
    weights, lengths, rows, widths = chunk.T
    examples += int(weights.sum())
    tokens += int(lengths.sum())
    slots += int((rows * widths).sum())
    shapes.update(zip(rows.astype(int).tolist(), widths.astype(int).tolist()))
    elements += len(chunk)
  seconds = time.perf_counter() - start
  expected = metadata.examples(split)
  return {"examples": examples, "tokens": tokens, "batches": elements // replicas, "shapes": len(shapes),
          "padding_waste": round(1 - tokens / max(slots, 1), 6), "examples_per_s": round(examples / seconds, 1),
          "dropped": expected - examples, "parser": "native" if native else "tf.io.parse_sequence_example",
          "boundaries": spec.boundaries, "batch_sizes": spec.batch_sizes}


def run(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m trainer.batches", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  add_data_flags(parser)
  quiet.add_flag(parser)
  parser.add_argument("--split", choices=contract.TRAINING_SPLITS, default="train")
  args = parser.parse_args(argv)
  try:
    result = measure(args.data_dir, args.num_buckets, args.tokens_per_batch, args.cpu_replicas, args.split,
                     args.pad_multiple)
  except contract.DataDirError as error:
    parser.error(str(error))
  print(json.dumps(result))
  return 0


def main():
  logging.basicConfig(level=logging.INFO if quiet.VERBOSE else logging.WARNING,
                      format="%(levelname)s %(name)s: %(message)s")
  sys.exit(run())


if __name__ == "__main__":
  main()
