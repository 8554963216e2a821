r"""The trainer's input pipeline against a raw read of the same shards, and batched vs per-record parsing.

Train split, one replica, 16 buckets, 4096 tokens per batch. Rows: two raw reads (in
batches of 1024; in chunks of 256 through a parallel interleave, as the trainer reads);
`trainer.batches.measure` with the native parser and with tf.io.parse_sequence_example, in
alternating passes (the target: >= 50% of the fastest raw read); and the per-example
design it replaced (a map per example cutting the padding, then bucket_by_sequence_length).
Then per-record parse_single_sequence_example against parse_sequence_example on batches of
256 (the target: >= 5x). Rows are counted inside the runtime (`Dataset.reduce`), each the
best of `--repeats` passes, with the least CPU time of any pass (all threads).

Example:
  python -m benchmarks.input_pipeline --data_dir /tmp/rnn_bench/out/ours_1worker_100mb --repeats 3
"""

import sys
import time

import quiet  # pylint: disable=unused-import  (first: before TensorFlow is imported)
import tensorflow as tf

import contract
from benchmarks import common
from trainer import batches, data, ops

PARSE_BATCH = 256
NUM_BUCKETS = 16
TOKENS_PER_BATCH = 4096


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


def _parse(serialized: tf.Tensor, task: str) -> dict:
  context, sequences, _ = tf.io.parse_sequence_example(serialized, *contract.parsing_spec(task))
  return {**context, **sequences}


def _per_example_bucketing(records: tf.data.Dataset, task: str, spec) -> tf.data.Dataset:
  """The trainer's first design: a function per example, then tf.data's own bucketing."""
  sequence_names = contract.feature_spec(task)["sequence"]
  unpad = lambda example: {name: value[:example[contract.LENGTH]] if name in sequence_names else value
                           for name, value in example.items()}
  examples = (records.batch(PARSE_BATCH).map(lambda s: _parse(s, task), num_parallel_calls=tf.data.AUTOTUNE)
              .unbatch().map(unpad, num_parallel_calls=tf.data.AUTOTUNE))
  return examples.bucket_by_sequence_length(
      element_length_func=lambda example: tf.cast(example[contract.LENGTH], tf.int32),
      bucket_boundaries=[b + 1 for b in spec.boundaries], bucket_batch_sizes=spec.batch_sizes + spec.batch_sizes[-1:],
      pad_to_bucket_boundary=True)


def measure(data_dir: str, repeats: int = 2) -> dict:
  metadata = contract.load_metadata(data_dir)
  paths = contract.shard_paths(data_dir, metadata.raw, "train")
  records = lambda: tf.data.TFRecordDataset(paths, compression_type=metadata.compression)
  chunks = lambda: tf.data.Dataset.from_tensor_slices(paths).interleave(
      lambda path: tf.data.TFRecordDataset(path, compression_type=metadata.compression).batch(data.CHUNK),
      cycle_length=max(1, min(len(paths), 8)), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  spec = data.bucket_spec(metadata, NUM_BUCKETS, TOKENS_PER_BATCH, 1)
  rows = {"raw TFRecordDataset read, counted in batches of 1024": _best(lambda: _rows(records().batch(1024)), repeats),
          f"raw read in chunks of {data.CHUNK}, parallel interleave": _best(lambda: _rows(chunks()), repeats)}
  fastest_raw = max(row["per_s"] for row in rows.values())
  # The trainer's own measurement with each parser; passes alternate, so both see the same machine.
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
  rows["reference: per-example unpad map + bucket_by_sequence_length"] = _best(
      lambda: _rows(_per_example_bucketing(records(), metadata.task, spec)), repeats)
  target = rows[f"trainer.batches.measure, {'native' if parsers[0] else 'tf.io.parse_sequence_example'}"]
  results = {"data_dir": data_dir, "shards": len(paths), "records": metadata.examples("train"), "rows": rows,
             "fastest_raw_per_s": fastest_raw, "trainer_vs_fastest_raw": round(target["per_s"] / fastest_raw, 3)}

  context_spec, sequence_spec = contract.parsing_spec(metadata.task)
  results["parse"] = {}
  for name, parallel in (("sequential", None), ("AUTOTUNE", tf.data.AUTOTUNE)):
    single = _best(lambda: int(records().map(
        lambda s: tf.io.parse_single_sequence_example(s, context_spec, sequence_spec),
        num_parallel_calls=parallel).reduce(tf.constant(0, tf.int64), lambda n, _: n + 1)), repeats)
    batched = _best(lambda: _rows(records().batch(PARSE_BATCH).map(
        lambda s: _parse(s, metadata.task), num_parallel_calls=parallel)), repeats)
    results["parse"][name] = {"per_record": single["per_s"], "batched": batched["per_s"],
                              "speedup": round(batched["per_s"] / single["per_s"], 2)}
  return results


def print_tables(results: dict) -> str:
  fastest, raw_cpu = results["fastest_raw_per_s"], next(iter(results["rows"].values()))["cpu_seconds"]
  rows = [(name, f"{r['per_s']:,.0f}", f"{100 * r['per_s'] / fastest:.0f}%",
           f"{r['cpu_seconds']:.2f} ({r['cpu_seconds'] / raw_cpu:.1f}x)") for name, r in results["rows"].items()]
  text = common.report(f"Trainer input, {results['records']:,} train records in {results['shards']} shard(s)", rows,
                       ["stage", "records/s", "vs the fastest raw read", "CPU s, all threads (vs the raw read)"])
  rows = [(name, f"{r['per_record']:,}", f"{r['batched']:,}", f"{r['speedup']:.1f}x")
          for name, r in results["parse"].items()]
  return text + common.report(f"Parsing: per-record vs parse_sequence_example on {PARSE_BATCH}", rows,
                              ["map parallelism", "per record (records/s)", "batched (records/s)", "speed-up"])


def main(argv=None):
  return common.main(__doc__, lambda args: measure(args.data_dir, args.repeats), print_tables,
                     (["--data_dir"], {"required": True, "help": "an OUTPUT_DIR of pipeline.preprocess"}),
                     (["--repeats"], {"type": int, "default": 2}), argv=argv)


if __name__ == "__main__":
  sys.exit(main())
