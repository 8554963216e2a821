r"""Training tokens/s: bucketed batches against the same examples padded to the maximum length.

Same model (`trainer.model.build_model` with the trainer's default hyper-parameters),
same loss (`trainer.loss`, token reduction), same optimizer, one replica, same token
budget per step (`--tokens_per_batch` padded slots), same examples:

  bucketed     batches of `trainer.data.make_dataset` (16 DP-optimal buckets, padded to
               the boundary, `tokens_per_batch // boundary` sequences each)
  pad to max   the examples of those batches, in the same order, in batches of
               `tokens_per_batch // max_length` sequences padded to the split's max length

Batches are built before timing, so only training steps are timed (after warm-up steps
that trace the step function). Reported: real (non-pad) tokens per second.

Example:
  python -m benchmarks.training --data_dir /tmp/rnn_bench/out/train_lm
"""

import argparse
import logging
import os
import sys
import time
from typing import Dict, List

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf

import contract  # pylint: disable=g-import-not-at-top
from benchmarks import common

NUM_BUCKETS = 16


def _bucketed_batches(data_dir: str, metadata: dict, tokens_per_batch: int, count: int) -> List[dict]:
  from trainer import data  # pylint: disable=g-import-not-at-top
  spec = data.bucket_spec(metadata, NUM_BUCKETS, tokens_per_batch, 1)
  dataset = data.make_dataset(contract.shard_paths(data_dir, metadata, "train"), metadata["task"], spec, 1,
                              training=True, compression=contract.compression_type(metadata), seed=0)
  return [{k: v.numpy() for k, v in batch.items()} for batch in dataset.take(count)]


def _padded_to_max(batches: List[dict], task: str, max_length: int, batch_size: int, count: int) -> List[dict]:
  """The real rows of `batches`, in order, re-batched to `batch_size` and padded to `max_length`."""
  from trainer import data  # pylint: disable=g-import-not-at-top
  sequence_names = list(contract.feature_spec(task)["sequence"])
  examples = []
  for batch in batches:
    for row in np.flatnonzero(batch[data.WEIGHT] > 0):
      examples.append({k: (v[row][:batch[contract.LENGTH][row]] if k in sequence_names else v[row])
                       for k, v in batch.items()})
  out = []
  for start in range(0, min(len(examples), count * batch_size) - batch_size + 1, batch_size):
    chunk = examples[start:start + batch_size]
    padded = {}
    for name in chunk[0]:
      if name in sequence_names:
        values = np.zeros([batch_size, max_length], np.int64)
        for i, example in enumerate(chunk):
          values[i, :len(example[name])] = example[name]
        padded[name] = values
      else:
        padded[name] = np.stack([example[name] for example in chunk])
    out.append(padded)
  return out


def _time_steps(batches: List[dict], task: str, vocab_size: int, num_classes: int, warmup: int) -> dict:
  import keras  # pylint: disable=g-import-not-at-top
  from trainer import loss as loss_lib  # pylint: disable=g-import-not-at-top
  from trainer.config import TrainerConfig  # pylint: disable=g-import-not-at-top
  from trainer.model import build_model  # pylint: disable=g-import-not-at-top
  from trainer import data  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(0)
  config = TrainerConfig(data_dir="", model_dir="")
  model = build_model(config, task, vocab_size, num_classes)
  optimizer = keras.optimizers.Adam(config.learning_rate)

  @tf.function(reduce_retracing=True)  # one generalised trace for all bucket shapes, as the trainer
  def train_step(batch):
    with tf.GradientTape() as tape:
      logits = model(batch[contract.TOKENS], training=True)
      target = loss_lib.targets(batch, task)
      mask = loss_lib.target_mask(batch, target)
      loss_sum, count = loss_lib.loss_sums(logits, target, mask, config.loss_reduction)
      loss = loss_sum / tf.maximum(count, 1.0)
    gradients = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    return loss

  tensors = [{k: tf.constant(v) for k, v in batch.items()} for batch in batches]
  for batch in tensors[:warmup]:
    float(train_step(batch))
  timed = tensors[warmup:]
  real = sum(float((b[contract.LENGTH].numpy() * b[data.WEIGHT].numpy()).sum()) if data.WEIGHT in b
             else float(b[contract.LENGTH].numpy().sum()) for b in timed)
  slots = sum(int(np.prod(b[contract.TOKENS].shape)) for b in timed)
  start = time.perf_counter()
  for batch in timed:
    last = train_step(batch)
  float(last)  # wait for the last step
  seconds = time.perf_counter() - start
  return {"steps": len(timed), "seconds": round(seconds, 3), "real_tokens": int(real), "slots": slots,
          "padding_waste": round(1 - real / slots, 4), "real_tokens_per_s": round(real / seconds),
          "slots_per_s": round(slots / seconds), "shapes": len({tuple(b[contract.TOKENS].shape) for b in timed})}


def measure(data_dir: str, tokens_per_batch: int = 4096, steps: int = 40, max_steps: int = 15,
            warmup: int = 12) -> Dict[str, dict]:
  from trainer import data  # pylint: disable=g-import-not-at-top
  metadata = contract.read_metadata(data_dir)
  task = metadata["task"]
  vocab_size = metadata["vocab"]["size"]
  num_classes = vocab_size if task == "lm" else metadata["labels"]["size"]
  max_length = data.max_length(metadata)
  bucketed = _bucketed_batches(data_dir, metadata, tokens_per_batch, warmup + steps)
  max_batch = max(1, tokens_per_batch // max_length)
  padded = _padded_to_max(bucketed, task, max_length, max_batch, 2 + max_steps)
  results = {"data_dir": data_dir, "task": task, "vocab_size": vocab_size, "num_classes": num_classes,
             "max_length": max_length, "tokens_per_batch": tokens_per_batch}
  results["bucketed"] = _time_steps(bucketed, task, vocab_size, num_classes, warmup)
  results["pad_to_max"] = _time_steps(padded, task, vocab_size, num_classes, 2)
  results["pad_to_max"]["batch_size"] = max_batch
  results["speedup"] = round(results["bucketed"]["real_tokens_per_s"] / results["pad_to_max"]["real_tokens_per_s"], 2)
  return results


def print_tables(results_list) -> str:
  text = ""
  for results in results_list:
    rows = []
    for name in ("bucketed", "pad_to_max"):
      r = results[name]
      label = ("16 DP-optimal buckets (trainer.data)" if name == "bucketed"
               else f"pad to max ({r['batch_size']} x {results['max_length']})")
      rows.append((label, r["steps"], f"{100 * r['padding_waste']:.1f}%", f"{r['slots_per_s']:,}",
                   f"{r['real_tokens_per_s']:,}",
                   f"{r['real_tokens_per_s'] / results['pad_to_max']['real_tokens_per_s']:.1f}x"))
    text += common.report(
        f"Training, {results['task']} on {os.path.basename(results['data_dir'].rstrip('/'))} (LSTM 64/128, "
        f"{results['num_classes']:,} classes, {results['tokens_per_batch']} slots per step, 1 replica)", rows,
        ["batches", "timed steps", "padding", "slots/s", "real tokens/s", "vs pad to max"])
  return text


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.training", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--data_dir", action="append", required=True)
  parser.add_argument("--tokens_per_batch", type=int, default=4096)
  parser.add_argument("--steps", type=int, default=40)
  parser.add_argument("--out", default=None)
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO)
  results = [measure(d, args.tokens_per_batch, args.steps) for d in args.data_dir]
  print_tables(results)
  if args.out:
    common.write_json(args.out, results)


if __name__ == "__main__":
  sys.exit(main())
