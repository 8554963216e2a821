"""Scale: memory per distinct token, linear cost in the corpus size, many distinct tokens.

    python -m benchmarks.scale counting --distinct_m 2     # bytes per distinct token, in-process
    python -m benchmarks.scale linear --sizes_mb 100 300 1000 --tiny_mb 2
    python -m benchmarks.scale distinct --size_mb 50 --max_vocab 50000

`counting` feeds the vocabulary's combiner (pipeline/vocabulary.py) batches with many
distinct tokens and measures, with tracemalloc, what its accumulators hold and their
peak, against the `collections.Counter` accumulators it replaced, in the same process.
`linear` runs the pipeline with 2 worker processes on prose of each size, plus a tiny
run whose time is the fixed start-up cost: seconds per MB exclude it. `distinct`
compares a corpus whose lines mix prose with unique identifiers (about one distinct
token per 17 bytes, as in logs and web text) with prose of the same size, in-process.
"""

import argparse
import collections
import json
import os
import sys
import time
import tracemalloc

from benchmarks import common
from benchmarks import corpus

_PIPELINE = ("--format", "text", "--task", "lm", "--overwrite")
_TWO_WORKERS = ("--direct_num_workers", 2, "--direct_running_mode", "multi_processing")


def _synthetic_batches(distinct: int, per_batch: int, common_words: int = 2000):
  """count_tokens outputs for batches of new tokens plus common words seen in every batch."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from pipeline import vocabulary  # pylint: disable=g-import-not-at-top
  words = [b"w%d" % i for i in range(common_words)]
  for start in range(0, distinct, per_batch):
    tokens = words * 3 + [b"id%x" % i for i in range(start, min(start + per_batch, distinct))]
    yield tuple(np.asarray(t) for t in vocabulary.count_tokens(tf.constant(tokens)))


def _counter_accumulate(batches, num_partitions):
  """The accumulators this pipeline used before: a Counter per partition, merged by update."""
  totals = collections.defaultdict(collections.Counter)
  for tokens, counts, fingerprints in batches:
    partitions = (fingerprints % num_partitions).tolist()
    for token, n, partition in zip(tokens.tolist(), counts.tolist(), partitions):
      totals[partition][token] += n
  return totals


def _compact_accumulate(batches, num_partitions):
  from pipeline import vocabulary  # pylint: disable=g-import-not-at-top
  combine = vocabulary.MergeCountsFn()
  totals = collections.defaultdict(combine.create_accumulator)
  for batch in batches:
    for partition, counts in vocabulary.count_batch(batch, num_partitions):
      totals[partition] = combine.add_input(totals[partition], counts)
  for partition in list(totals):  # one at a time, as a runner's table does
    totals[partition] = combine.compact(totals[partition])
  return totals


def counting(distinct_m: float, num_partitions: int = 8) -> dict:
  distinct = int(distinct_m * 1e6)
  total = distinct + 2000  # and the common words
  _ = list(_synthetic_batches(1000, per_batch=1000))  # TF's first run allocates for good
  rows = {}
  for name, accumulate in (("counter", _counter_accumulate), ("compact", _compact_accumulate)):
    # Batches are made inside the traced region: the tokens' bytes objects that a Counter
    # keeps alive are made there too, as the runner makes them from each graph run.
    tracemalloc.start()
    start = time.perf_counter()
    accumulators = accumulate(_synthetic_batches(distinct, per_batch=40_000), num_partitions)
    seconds = time.perf_counter() - start
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del accumulators
    rows[name] = {"distinct_tokens": total, "held_bytes_per_token": round(held / total, 1),
                  "peak_bytes_per_token": round(peak / total, 1), "seconds_traced": round(seconds, 1)}
  rows["ratio_held"] = round(rows["counter"]["held_bytes_per_token"] / rows["compact"]["held_bytes_per_token"], 2)
  rows["ratio_peak"] = round(rows["counter"]["peak_bytes_per_token"] / rows["compact"]["peak_bytes_per_token"], 2)
  return rows


def _pipeline(path: str, output_dir: str, *extra) -> dict:
  argv = common.python_module("pipeline.preprocess", "--input", path, "--output_dir", output_dir, *_PIPELINE, *extra)
  result = common.run_timed(argv, log_path=output_dir + ".log")
  return {k: result[k] for k in ("seconds", "cpu_seconds", "peak_rss_mb", "peak_tree_rss_mb")}


def linear(sizes_mb, tiny_mb: float, handwritten: bool = True) -> dict:
  work = common.work_dir()
  rows = {}
  tiny = corpus.build(tiny_mb)
  fixed = _pipeline(tiny["path"], os.path.join(work, "scale", "tiny"), *_TWO_WORKERS)
  rows["fixed"] = {"mb": tiny_mb, **fixed}
  for size in sizes_mb:
    built = corpus.build(size)
    run = _pipeline(built["path"], os.path.join(work, "scale", f"prose_{size:g}"), *_TWO_WORKERS)
    marginal_mb = size - tiny_mb
    run["s_per_mb"] = round((run["seconds"] - fixed["seconds"]) / marginal_mb, 4)
    run["cpu_s_per_mb"] = round((run["cpu_seconds"] - fixed["cpu_seconds"]) / marginal_mb, 4)
    rows[f"{size:g}"] = {"mb": size, **run}
  if handwritten:
    largest = max(sizes_mb)
    argv = common.python_module("benchmarks.handwritten", "--input", corpus.build(largest)["path"],
                                "--output_dir", os.path.join(work, "scale", "handwritten"), "--num_shards", 4)
    hand = common.run_timed(argv)
    rows["handwritten"] = {"mb": largest, "seconds": hand["seconds"], "peak_rss_mb": hand["peak_rss_mb"],
                           "speedup": round(hand["seconds"] / rows[f"{largest:g}"]["seconds"], 2)}
  return rows


def distinct_corpus(prose_path: str, path: str, every: int = 3) -> dict:
  """The prose with every `every`-th word replaced by a new identifier (a distinct token)."""
  if os.path.exists(path):
    return {"path": path, "reused": True}
  first_id = next_id = 1 << 20  # short hex identifiers: about as long as the words they replace
  lines = 0
  with open(prose_path, encoding="utf-8") as source, open(path + ".part", "w", encoding="utf-8") as out:
    for line in source:
      words = line.split()
      for i in range(every - 1, len(words), every):
        words[i] = f"u{next_id:x}"
        next_id += 1
      out.write(" ".join(words) + "\n")
      lines += 1
  os.replace(path + ".part", path)
  return {"path": path, "identifiers": next_id - first_id, "lines": lines}


def distinct(size_mb: float, max_vocab: int) -> dict:
  work = common.work_dir()
  prose = corpus.build(size_mb)
  mixed = distinct_corpus(prose["path"], os.path.join(work, "corpora", f"distinct_{size_mb:g}mb.txt"))
  rows = {"corpus": mixed}
  for name, path in (("prose", prose["path"]), ("distinct", mixed["path"])):
    output_dir = os.path.join(work, "scale", f"{name}_{size_mb:g}")
    rows[name] = {"mb": round(os.path.getsize(path) / 1e6, 1),
                  **_pipeline(path, output_dir, "--max_vocab", max_vocab)}
    with open(os.path.join(output_dir, "metadata.json"), encoding="utf-8") as f:
      rows[name]["vocab"] = json.load(f)["vocab"]["size"]
  rows["rss_ratio"] = round(rows["distinct"]["peak_rss_mb"] / rows["prose"]["peak_rss_mb"], 3)
  return rows


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  commands = parser.add_subparsers(dest="command", required=True)
  counting_parser = commands.add_parser("counting")
  counting_parser.add_argument("--distinct_m", type=float, default=2)
  linear_parser = commands.add_parser("linear")
  linear_parser.add_argument("--sizes_mb", type=float, nargs="+", default=[100, 300, 1000])
  linear_parser.add_argument("--tiny_mb", type=float, default=2)
  linear_parser.add_argument("--no_handwritten", action="store_true")
  distinct_parser = commands.add_parser("distinct")
  distinct_parser.add_argument("--size_mb", type=float, default=50)
  distinct_parser.add_argument("--max_vocab", type=int, default=50000)
  args = parser.parse_args(argv)
  if args.command == "counting":
    result = counting(args.distinct_m)
  elif args.command == "linear":
    result = linear(args.sizes_mb, args.tiny_mb, not args.no_handwritten)
  else:
    result = distinct(args.size_mb, args.max_vocab)
  result = {"command": args.command, "result": result, "load_average": common.load_average()}
  common.write_json(os.path.join(common.work_dir(), "scale", f"{args.command}.json"), result)
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  sys.exit(main())
