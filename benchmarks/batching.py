r"""The trainer's bucketed batches: how fast they are read, how much they pad, how fast they train.

    python -m benchmarks.batching input --data_dir /tmp/rnn_bench/out/ours_1worker_100mb --repeats 3
    python -m benchmarks.batching padding --data_dir /tmp/rnn_bench/out/ours_1worker_100mb --data_dir DEMO_OUT
    python -m benchmarks.batching training --data_dir /tmp/rnn_bench/out/train_lm_8k_1mb --data_dir DEMO_OUT

The train split, 16 buckets, 4096 tokens per batch, one replica unless a row says otherwise.
"""

import os
import sys
import tempfile
import time

import quiet  # pylint: disable=unused-import  (first: before TensorFlow is imported)
import keras
import numpy as np
import tensorflow as tf

import contract
from benchmarks import common
from trainer import batches, config as config_lib, data, loop, ops

NUM_BUCKETS = 16
TOKENS_PER_BATCH = 4096  # as BENCHMARKS.md measured them (the trainer now defaults to 1024)
PAD_BATCH = 64


def _rows(dataset: tf.data.Dataset) -> int:
  """Rows of a dataset of batches, counted in the runtime (no per-element Python)."""
  return int(dataset.reduce(tf.constant(0, tf.int64),
                            lambda n, x: n + tf.shape(tf.nest.flatten(x)[0], out_type=tf.int64)[0]).numpy())


def _best(fn, repeats: int) -> dict:
  """The fastest of `repeats` passes of fn() (which returns a count), and the least CPU time of any."""
  best, least_cpu = None, None
  for _ in range(repeats):
    start, cpu_start = time.perf_counter(), time.process_time()
    count = fn()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    least_cpu = cpu_seconds if least_cpu is None else min(least_cpu, cpu_seconds)
    if best is None or seconds < best["seconds"]:
      best = {"count": count, "seconds": round(seconds, 3), "per_s": round(count / seconds)}
  return {**best, "cpu_seconds": round(least_cpu, 3)}


def input_speed(data_dir: str, repeats: int = 2) -> dict:
  """Trainer input: `trainer.batches.measure` with each parser (passes alternate) against raw reads of the
  same shards."""
  metadata = contract.load_metadata(data_dir)
  paths = contract.shard_paths(data_dir, metadata.raw, "train")
  records = lambda: tf.data.TFRecordDataset(paths, compression_type=metadata.compression)
  chunks = lambda: tf.data.Dataset.from_tensor_slices(paths).interleave(
      lambda path: tf.data.TFRecordDataset(path, compression_type=metadata.compression).batch(data.CHUNK),
      cycle_length=max(1, min(len(paths), 8)), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  rows = {"raw TFRecordDataset read, counted in batches of 1024": _best(lambda: _rows(records().batch(1024)), repeats),
          f"raw read in chunks of {data.CHUNK}, parallel interleave": _best(lambda: _rows(chunks()), repeats)}
  fastest_raw = max(row["per_s"] for row in rows.values())
  parsers = [True, False] if ops.available() else [False]
  runs = {native: [] for native in parsers}
  for _ in range(repeats):
    for native in parsers:
      cpu_start = time.process_time()
      result = batches.measure(data_dir, NUM_BUCKETS, TOKENS_PER_BATCH, 1, native=native)
      runs[native].append({**result, "cpu_seconds": round(time.process_time() - cpu_start, 3)})
  for native, passes in runs.items():
    best = max(passes, key=lambda r: r["examples_per_s"])
    rows[f"trainer.batches.measure, {best['parser']}"] = {
        "per_s": best["examples_per_s"], "cpu_seconds": min(r["cpu_seconds"] for r in passes)}
  target = rows[f"trainer.batches.measure, {'native' if parsers[0] else 'tf.io.parse_sequence_example'}"]
  return {"data_dir": data_dir, "shards": len(paths), "records": metadata.examples("train"), "rows": rows,
          "fastest_raw_per_s": fastest_raw, "trainer_vs_fastest_raw": round(target["per_s"] / fastest_raw, 3)}


def input_tables(results: dict) -> str:
  fastest, raw_cpu = results["fastest_raw_per_s"], next(iter(results["rows"].values()))["cpu_seconds"]
  rows = [(name, f"{r['per_s']:,.0f}", f"{100 * r['per_s'] / fastest:.0f}%",
           f"{r['cpu_seconds']:.2f} ({r['cpu_seconds'] / raw_cpu:.1f}x)") for name, r in results["rows"].items()]
  return common.report(f"Trainer input, {results['records']:,} train records in {results['shards']} shard(s)", rows,
                       ["stage", "records/s", "vs the fastest raw read", "CPU s, all threads (vs the raw read)"])


def padding(data_dir: str) -> dict:
  """Padding waste (padded slots / all slots): pad to max, dynamic per batch of 64, the pipeline's
  DP-optimal buckets, and the trainer's real batches (filler rows included) at several --pad_multiple."""
  metadata = contract.load_metadata(data_dir)
  context_spec = {contract.LENGTH: tf.io.FixedLenFeature([], tf.int64)}
  records = tf.data.TFRecordDataset(contract.shard_paths(data_dir, metadata.raw, "train"),
                                    compression_type=metadata.compression)  # as the trainer reads them, unshuffled
  lengths = np.concatenate([batch.numpy() for batch in records.batch(4096).map(
      lambda s: tf.io.parse_sequence_example(s, context_features=context_spec)[0][contract.LENGTH])])
  bounds = np.asarray(metadata.boundaries(NUM_BUCKETS))
  slots = {"pad to max": int(lengths.max()) * len(lengths),
           f"dynamic per batch of {PAD_BATCH} (input order)": sum(int(lengths[i:i + PAD_BATCH].max()) * len(
               lengths[i:i + PAD_BATCH]) for i in range(0, len(lengths), PAD_BATCH)),
           f"{NUM_BUCKETS} DP-optimal buckets (pipeline), pad to boundary": int(
               bounds[np.searchsorted(bounds, lengths, side="left")].sum())}
  waste = {strategy: 1 - lengths.sum() / n for strategy, n in slots.items()}
  for replicas, pad_multiple in ((1, 0), (2, 0), (2, 8), (2, 2), (2, 1)):
    result = batches.measure(data_dir, NUM_BUCKETS, TOKENS_PER_BATCH, replicas, pad_multiple=pad_multiple)
    waste[f"trainer's real batches ({replicas} replica{'s' if replicas > 1 else ''}, --pad_multiple {pad_multiple}"
          f"{' (the default)' if pad_multiple == batches.DEFAULT_PAD_MULTIPLE else ''}: "
          f"{result['shapes']} shapes)"] = result["padding_waste"]
  return {"corpus": os.path.basename(data_dir.rstrip("/")), "data_dir": data_dir, "examples": len(lengths),
          "tokens": int(lengths.sum()), "max_length": int(lengths.max()),
          "mean_length": round(float(lengths.mean()), 2), "waste": {s: round(float(w), 4) for s, w in waste.items()}}


def padding_tables(result: dict) -> str:
  pad_to_max = result["waste"]["pad to max"]
  rows = [(strategy, f"{100 * w:.1f}%", f"{(1 - pad_to_max) / (1 - w):.2f}") for strategy, w in result["waste"].items()]
  return common.report(f"Padding waste, {result['corpus']} ({result['examples']:,} train sequences, mean length "
                       f"{result['mean_length']}, max {result['max_length']})", rows,
                       ["strategy", "padding waste", "slots vs pad to max"])


def training(data_dir: str, tokens_per_batch: int = TOKENS_PER_BATCH, steps: int = 40, max_steps: int = 15,
             warmup: int = 2) -> dict:
  """Training tokens/s: the trainer's own steps (`trainer.loop.Trainer.run_steps`: its default model, loss,
  clipping and optimizer, one replica) on its shuffled input (seed 0) in 16 DP-optimal buckets, against one
  bucket as wide as the longest sequence; batches built before timing, the first steps (tracing) untimed."""
  metadata = contract.load_metadata(data_dir)
  max_length = data.max_length(metadata)
  specs = {"bucketed": (data.bucket_spec(metadata, NUM_BUCKETS, tokens_per_batch, 1), steps),
           "pad_to_max": (data.BucketSpec([max_length], [max(1, tokens_per_batch // max_length)]), max_steps)}
  results = {"data_dir": data_dir, "task": metadata.task, "num_classes": metadata.num_classes,
             "max_length": max_length, "tokens_per_batch": tokens_per_batch}
  paths = contract.shard_paths(data_dir, metadata.raw, "train")
  for name, (spec, timed) in specs.items():
    keras.utils.set_random_seed(0)
    with tempfile.TemporaryDirectory() as model_dir:
      trainer = loop.Trainer(config_lib.TrainerConfig(data_dir=data_dir, model_dir=model_dir),
                             tf.distribute.OneDeviceStrategy("/cpu:0"), metadata)
      dataset = data.make_dataset(paths, metadata.task, spec, 1, training=True, compression=metadata.compression,
                                  seed=0).take(warmup + timed).cache()
      _rows(dataset)  # fills the cache: the timed steps do not wait for input
      iterator = iter(trainer.strategy.experimental_distribute_dataset(dataset))
      float(trainer.run_steps(iterator, tf.constant(warmup))["loss_sum"])
      start = time.perf_counter()
      sums = {k: float(v) for k, v in trainer.run_steps(iterator, tf.constant(timed)).items()}
      seconds = time.perf_counter() - start
    results[name] = {"steps": timed, "seconds": round(seconds, 3), "real_tokens": int(sums["tokens"]),
                     "slots": int(sums["slots"]), "padding_waste": round(1 - sums["tokens"] / sums["slots"], 4),
                     "real_tokens_per_s": round(sums["tokens"] / seconds),
                     "slots_per_s": round(sums["slots"] / seconds)}
  return results


def training_tables(results: dict) -> str:
  pad_to_max = results["pad_to_max"]
  rows = [(label, r["steps"], f"{100 * r['padding_waste']:.1f}%", f"{r['slots_per_s']:,}",
           f"{r['real_tokens_per_s']:,}", f"{r['real_tokens_per_s'] / pad_to_max['real_tokens_per_s']:.1f}x")
          for label, r in (("16 DP-optimal buckets (trainer.data)", results["bucketed"]), (
              f"pad to max ({results['tokens_per_batch'] // results['max_length']} x {results['max_length']})",
              pad_to_max))]
  return common.report(
      f"Training, {results['task']} on {os.path.basename(results['data_dir'].rstrip('/'))} (LSTM 64/128, "
      f"{results['num_classes']:,} classes, {results['tokens_per_batch']} slots per step, 1 replica)", rows,
      ["batches", "timed steps", "padding", "slots/s", "real tokens/s", "vs pad to max"])


TABLES = {"input": input_tables, "padding": padding_tables, "training": training_tables}


def main(argv=None):
  data_dir = (["--data_dir"], {"action": "append", "required": True, "help": "an OUTPUT_DIR of pipeline.preprocess"})
  commands = {"input": (lambda d, args: input_speed(d, args.repeats), input_speed.__doc__,
                        [(["--repeats"], {"type": int, "default": 2})]),
              "padding": (lambda d, args: padding(d), padding.__doc__, []),
              "training": (lambda d, args: training(d, args.tokens_per_batch, args.steps), training.__doc__,
                           [(["--tokens_per_batch"], {"type": int, "default": TOKENS_PER_BATCH}),
                            (["--steps"], {"type": int, "default": 40})])}
  return common.main(__doc__, {
      name: (lambda args, measure=measure: [measure(d, args) for d in args.data_dir],
             lambda results, name=name: [TABLES[name](result) for result in results], doc, [data_dir, *flags])
      for name, (measure, doc, flags) in commands.items()}, argv=argv)


if __name__ == "__main__":
  sys.exit(main())
