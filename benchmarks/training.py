r"""Training tokens/s: bucketed batches against the same examples padded to the maximum length.

Same model and loss as the trainer (its defaults), one replica, the same token budget per
step (`--tokens_per_batch` padded slots), the same shuffled input (`trainer.data.make_dataset`,
seed 0) cut two ways: 16 DP-optimal buckets padded to their boundaries, or one bucket as
wide as the longest sequence. Batches are built before timing; warm-up steps trace the
step function. Reported: real (non-pad) tokens per second.

Example:
  python -m benchmarks.training --data_dir /tmp/rnn_bench/out/train_lm
"""

import os
import sys
import time
from typing import Dict, List

import quiet  # pylint: disable=unused-import  (first: before TensorFlow is imported)
import keras
import numpy as np
import tensorflow as tf

import contract
from benchmarks import common
from trainer import config as config_lib, data, loss as loss_lib, model as model_lib

NUM_BUCKETS = 16


def _batches(data_dir: str, metadata: contract.Metadata, spec, count: int) -> List[dict]:
  """The first `count` training batches of the trainer's input with bucket spec `spec`."""
  dataset = data.make_dataset(contract.shard_paths(data_dir, metadata.raw, "train"), metadata.task, spec, 1,
                              training=True, compression=metadata.compression, seed=0)
  return [{k: v.numpy() for k, v in batch.items()} for batch in dataset.take(count)]


def _time_steps(batches: List[dict], task: str, vocab_size: int, num_classes: int, warmup: int) -> dict:
  keras.utils.set_random_seed(0)
  config = config_lib.TrainerConfig(data_dir="", model_dir="")  # the trainer's defaults
  model = model_lib.build_model(config, task, vocab_size, num_classes)
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
  real = sum(float((b[contract.LENGTH].numpy() * b[data.WEIGHT].numpy()).sum()) for b in timed)  # fillers: 0
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
  metadata = contract.load_metadata(data_dir)
  max_length = data.max_length(metadata)
  batches = {"bucketed": (data.bucket_spec(metadata, NUM_BUCKETS, tokens_per_batch, 1), warmup, steps),
             "pad_to_max": (data.BucketSpec([max_length], [max(1, tokens_per_batch // max_length)]), 2, max_steps)}
  results = {"data_dir": data_dir, "task": metadata.task, "num_classes": metadata.num_classes,
             "max_length": max_length, "tokens_per_batch": tokens_per_batch}
  for name, (spec, warm, timed) in batches.items():
    results[name] = _time_steps(_batches(data_dir, metadata, spec, warm + timed), metadata.task,
                                metadata.vocab_size, metadata.num_classes, warm)
  return results


def print_tables(results_list) -> str:
  text = ""
  for results in results_list:
    rows = []
    for name in ("bucketed", "pad_to_max"):
      r = results[name]
      label = ("16 DP-optimal buckets (trainer.data)" if name == "bucketed"
               else f"pad to max ({results['tokens_per_batch'] // results['max_length']} x {results['max_length']})")
      speedup = r["real_tokens_per_s"] / results["pad_to_max"]["real_tokens_per_s"]
      rows.append((label, r["steps"], f"{100 * r['padding_waste']:.1f}%", f"{r['slots_per_s']:,}",
                   f"{r['real_tokens_per_s']:,}", f"{speedup:.1f}x"))
    text += common.report(
        f"Training, {results['task']} on {os.path.basename(results['data_dir'].rstrip('/'))} (LSTM 64/128, "
        f"{results['num_classes']:,} classes, {results['tokens_per_batch']} slots per step, 1 replica)", rows,
        ["batches", "timed steps", "padding", "slots/s", "real tokens/s", "vs pad to max"])
  return text


def main(argv=None):
  return common.main(__doc__, lambda args: [measure(d, args.tokens_per_batch, args.steps) for d in args.data_dir],
                     print_tables, (["--data_dir"], {"action": "append", "required": True}),
                     (["--tokens_per_batch"], {"type": int, "default": 4096}),
                     (["--steps"], {"type": int, "default": 40}), argv=argv)


if __name__ == "__main__":
  sys.exit(main())
