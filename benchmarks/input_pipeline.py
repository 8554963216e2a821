r"""The trainer's input pipeline against a raw read of the same shards, and batched vs per-record parsing.

All tf.data figures are counted inside the runtime (`Dataset.reduce`) on batches, so no
Python loop and no per-element function is added by the measurement itself; only
`trainer.batches.measure` is timed as it is (one Python iteration per batch, as the
training loop does). Each figure is the best of `--repeats` passes (the shards are in
the page cache after the first). Any per-element tf.data function (map, filter, reduce)
costs tens of microseconds on this machine, so the raw read is reported twice: counted
in batches of 1024 (what reading and framing cost: the ceiling) and counted one record
at a time by a trivial reduce function (what the cheapest per-record consumer costs).

  raw read                 TFRecordDataset(files): records/s, both ways
  ladder                   raw in chunks of 256 (parallel interleave) → + pools of 8192 parsed
                           ragged (tf.io.parse_sequence_example, then the native parser of
                           trainer/ops) → trainer.data.make_dataset (cut into bucketed batches),
                           with each parser
  reference                the per-example design it replaced: batch(256)+parse → unbatch →
                           a map per example cutting the padding → bucket_by_sequence_length
  trainer.batches          examples/s of trainer.batches.measure (the target: >= 50% of raw), as the
                           trainer runs it (native parser) and with tf.io.parse_sequence_example,
                           in alternating passes
  parse                    per-record parse_single_sequence_example vs parse_sequence_example on
                           batches of 256, sequential and with AUTOTUNE parallel calls (target >= 5x)

Example:
  python -m benchmarks.input_pipeline --data_dir /tmp/rnn_bench/out/ours_100mb
"""

import argparse
import functools
import logging
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # pylint: disable=g-import-not-at-top

import contract  # pylint: disable=g-import-not-at-top
from benchmarks import common

PARSE_BATCH = 256
NUM_BUCKETS = 16
TOKENS_PER_BATCH = 4096


def _count(dataset: tf.data.Dataset, weight_key=None) -> int:
  if weight_key:
    return int(dataset.reduce(tf.constant(0.0), lambda n, x: n + tf.reduce_sum(x[weight_key])).numpy())
  return int(dataset.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1).numpy())


def _element_count(dataset: tf.data.Dataset) -> int:
  """Counts elements of any shape without a per-element function (padded_batch has none)."""
  return _batch_size_count(dataset.padded_batch(1024))


def _batch_size_count(dataset: tf.data.Dataset) -> int:
  return int(dataset.reduce(tf.constant(0, tf.int64),
                            lambda n, x: n + tf.shape(tf.nest.flatten(x)[0], out_type=tf.int64)[0]).numpy())


def parse_batch(serialized: tf.Tensor, task: str) -> dict:
  """A batch of serialized SequenceExamples → context and batch-padded sequence features."""
  context_spec, sequence_spec = contract.parsing_spec(task)
  context, sequences, _ = tf.io.parse_sequence_example(serialized, context_spec, sequence_spec)
  return {**context, **sequences}


def _per_example_bucketing(records: tf.data.Dataset, task: str, spec) -> tf.data.Dataset:
  """The trainer's first design: a function per example, then tf.data's own bucketing."""
  sequence_names = contract.feature_spec(task)["sequence"]

  def unpad(example):
    return {name: value[:example[contract.LENGTH]] if name in sequence_names else value
            for name, value in example.items()}

  examples = (records.batch(PARSE_BATCH).map(lambda s: parse_batch(s, task), num_parallel_calls=tf.data.AUTOTUNE)
              .unbatch().map(unpad, num_parallel_calls=tf.data.AUTOTUNE))
  return examples.bucket_by_sequence_length(
      element_length_func=lambda example: tf.cast(example[contract.LENGTH], tf.int32),
      bucket_boundaries=[b + 1 for b in spec.boundaries],
      bucket_batch_sizes=spec.batch_sizes + spec.batch_sizes[-1:],
      pad_to_bucket_boundary=True, no_padding=False)


def _best(fn, repeats: int) -> dict:
  """The fastest of `repeats` passes, and the least CPU time of any (all threads of the process).

  CPU seconds are what another process on the machine cannot take away: with the cores
  shared, wall-clock ratios swing by a third from run to run, CPU ratios much less.
  """
  best, least_cpu = None, None
  for _ in range(repeats):
    start, cpu_start = time.perf_counter(), time.process_time()
    count = fn()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    least_cpu = cpu_seconds if least_cpu is None else min(least_cpu, cpu_seconds)
    if best is None or seconds < best["seconds"]:
      best = {"count": count, "seconds": round(seconds, 3), "per_s": round(count / seconds)}
  return {**best, "cpu_seconds": round(least_cpu, 3)}


def measure(data_dir: str, repeats: int = 2) -> dict:
  from trainer import batches  # pylint: disable=g-import-not-at-top
  from trainer import data  # pylint: disable=g-import-not-at-top
  from trainer import ops  # pylint: disable=g-import-not-at-top
  metadata = contract.read_metadata(data_dir)
  paths = contract.shard_paths(data_dir, metadata, "train")
  compression = contract.compression_type(metadata)
  task = metadata["task"]
  context_spec, sequence_spec = contract.parsing_spec(task)
  autotune = tf.data.AUTOTUNE

  def records():
    return tf.data.TFRecordDataset(paths, compression_type=compression)

  def parsed_batches(parallel):
    return records().batch(PARSE_BATCH).map(lambda s: parse_batch(s, task), num_parallel_calls=parallel)

  spec = data.bucket_spec(metadata, NUM_BUCKETS, TOKENS_PER_BATCH, 1)
  results = {"data_dir": data_dir, "shards": len(paths), "records": metadata["splits"]["train"]["examples"]}
  results["raw_read"] = _best(lambda: _batch_size_count(records().batch(1024)), repeats)
  results["raw_read_per_record"] = _best(lambda: _count(records()), repeats)
  files = tf.data.Dataset.from_tensor_slices(paths)
  chunks = lambda: files.interleave(
      lambda path: tf.data.TFRecordDataset(path, compression_type=compression).batch(data.CHUNK),
      cycle_length=max(1, min(len(paths), 8)), num_parallel_calls=autotune, deterministic=True)
  native = ops.available()
  parsers = {"tf.io.parse_sequence_example": False, **({"the native parser": True} if native else {})}
  ladder = {f"raw read in chunks of {data.CHUNK}, parallel interleave": lambda: _batch_size_count(chunks())}
  for parser, flag in parsers.items():
    ladder[f"+ pools of {data.POOL} parsed (ragged) by {parser}"] = functools.partial(
        lambda flag: _batch_size_count(chunks().ragged_batch(data.POOL // data.CHUNK).map(
            lambda s: data.parse_ragged(s.flat_values, task, flag), num_parallel_calls=autotune,
            deterministic=True)), flag)
  for parser, flag in parsers.items():
    ladder[f"trainer.data.make_dataset ({parser}; + cut into bucketed batches), counted in-graph"] = (
        functools.partial(lambda flag: _count(data.make_dataset(paths, task, spec, 1, training=False,
                                                                compression=compression, native=flag),
                                              data.WEIGHT), flag))
  ladder["reference: per-example unpad map + bucket_by_sequence_length (the design it replaced)"] = lambda: (
      _batch_size_count(_per_example_bucketing(records(), task, spec)))
  results["ladder"] = {name: _best(fn, repeats) for name, fn in ladder.items()}
  # The trainer's own measurement, with each parser; passes alternate, so both see the same machine.
  trainer = {flag: (None, None) for flag in parsers.values()}
  for _ in range(repeats):
    for flag in parsers.values():
      cpu_start = time.process_time()
      result = batches.measure(data_dir, NUM_BUCKETS, TOKENS_PER_BATCH, 1, native=flag)
      cpu_seconds = time.process_time() - cpu_start  # building the dataset included: about 0.1 s
      best, least_cpu = trainer[flag]
      least_cpu = cpu_seconds if least_cpu is None else min(least_cpu, cpu_seconds)
      if best is None or result["examples_per_s"] > best["examples_per_s"]:
        best = result
      trainer[flag] = (best, least_cpu)
  results["trainer_batches_by_parser"] = {best["parser"]: {**best, "cpu_seconds": round(least_cpu, 3)}
                                          for best, least_cpu in trainer.values()}
  trainer_best = results["trainer_batches_by_parser"]["native" if native else "tf.io.parse_sequence_example"]
  results["trainer_batches"] = trainer_best
  results["trainer_vs_raw"] = round(trainer_best["examples_per_s"] / results["raw_read"]["per_s"], 3)
  fastest_raw = max(results["raw_read"]["per_s"], next(iter(results["ladder"].values()))["per_s"])
  results["trainer_vs_fastest_raw"] = round(trainer_best["examples_per_s"] / fastest_raw, 3)
  results["trainer_vs_raw_per_record"] = round(
      trainer_best["examples_per_s"] / results["raw_read_per_record"]["per_s"], 3)

  def single(parallel):
    return _count(records().map(lambda s: tf.io.parse_single_sequence_example(s, context_spec, sequence_spec),
                                num_parallel_calls=parallel))

  def batched(parallel):
    return _batch_size_count(records().batch(PARSE_BATCH).map(
        lambda s: parse_batch(s, task), num_parallel_calls=parallel))

  results["parse"] = {}
  for name, parallel in (("sequential", None), ("AUTOTUNE", autotune)):
    per_record = _best(lambda: single(parallel), repeats)
    per_batch = _best(lambda: batched(parallel), repeats)
    results["parse"][name] = {"per_record": per_record, "batched": per_batch,
                              "speedup": round(per_batch["per_s"] / per_record["per_s"], 2)}
  return results


def print_tables(results: dict) -> str:
  # 100% is the fastest raw read measured (plain, or chunks through a parallel interleave).
  raw = max(results["raw_read"]["per_s"], next(iter(results["ladder"].values()))["per_s"])
  per_record = results["raw_read_per_record"]["per_s"]

  raw_cpu = results["raw_read"]["cpu_seconds"]

  def row(name, per_s, cpu_seconds):
    return (name, f"{per_s:,.0f}", f"{100 * per_s / raw:.0f}%", f"{100 * per_s / per_record:.0f}%",
            f"{cpu_seconds:.2f} ({cpu_seconds / raw_cpu:.1f}x)")

  rows = [row("raw TFRecordDataset read, counted in batches of 1024", results["raw_read"]["per_s"], raw_cpu),
          row("raw TFRecordDataset read, counted per record (trivial reduce fn)", per_record,
              results["raw_read_per_record"]["cpu_seconds"])]
  rows += [row(name, r["per_s"], r["cpu_seconds"]) for name, r in results["ladder"].items()]
  target = results["trainer_batches"]  # runs before run 6 measured one parser and did not name it
  for result in (results.get("trainer_batches_by_parser") or {None: target}).values():
    parser = f", {result['parser']}" if "parser" in result else ""
    if result.get("parser") == target.get("parser"):
      name = f"**trainer.batches.measure**{parser} (examples/s; the target)"
    else:
      name = f"trainer.batches.measure{parser}"
    rows.append(row(name, result["examples_per_s"], result["cpu_seconds"]))
  text = common.report(f"Trainer input, {results['records']:,} train records in {results['shards']} shard(s)",
                       rows, ["stage", "records/s", "vs the fastest raw read", "vs raw (per record)",
                              "CPU s, all threads (vs the raw read)"])
  rows = []
  for name, r in results["parse"].items():
    rows.append((name, f"{r['per_record']['per_s']:,}", f"{r['batched']['per_s']:,}", f"{r['speedup']:.1f}x"))
  text += common.report("Parsing: per-record parse_single_sequence_example vs parse_sequence_example on 256",
                        rows, ["map parallelism", "per record (records/s)", "batched (records/s)", "speed-up"])
  return text


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.input_pipeline", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--data_dir", required=True)
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--out", default=None)
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO)
  results = measure(args.data_dir, args.repeats)
  print_tables(results)
  if args.out:
    common.write_json(args.out, results)


if __name__ == "__main__":
  sys.exit(main())
