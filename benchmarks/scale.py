"""Scale: peak RSS against corpus size, memory per distinct token, many distinct tokens.

    python -m benchmarks.scale memory --multiples 1 10 100
    python -m benchmarks.scale counting --distinct_m 2
    python -m benchmarks.scale distinct --size_mb 50 --max_vocab 50000

Cost against corpus size (seconds per MB) is `benchmarks.pipeline_throughput` on three sizes.

`<command> --help` says what each measures; `--out` keeps the results as JSON.
"""

import collections
import json
import os
import shutil
import sys
import time
import tracemalloc

import quiet  # pylint: disable=unused-import  (first: before TensorFlow is imported)
import numpy as np
import tensorflow as tf

import contract
from benchmarks import common
from benchmarks import corpus

DEMO = os.path.join(common.REPO, "data", "demo", "tagged.conll")


def memory(multiples, work: str = None) -> dict:
  """Memory: peak RSS of the in-process pipeline (one process holds every stage) on the demo
  corpus repeated, so the vocabulary stays fixed and any growth is data held."""
  work = common.work_dir(work)
  with open(DEMO, "rb") as f:
    text = f.read().rstrip(b"\n") + b"\n\n"
  sentences = text.count(b"\n\n") - text.count(b"-DOCSTART-")  # a -DOCSTART- block is filtered
  os.makedirs(os.path.join(work, "corpora"), exist_ok=True)
  rows = {}
  for multiple in multiples:
    path = os.path.join(work, "corpora", f"demo_x{multiple}.conll")
    with open(path, "wb") as f:
      f.write(text * multiple)
    output_dir = os.path.join(work, "out", f"memory_x{multiple}")
    timing = common.preprocess(path, output_dir, "--format", "conll", "--task", "tag", "--direct_num_workers", 1,
                               log_path=os.path.join(work, "logs", f"memory_x{multiple}.log"))
    metadata = contract.load_metadata(output_dir)  # exit 0 means COMPLETED: the count identity held
    assert metadata.counts["written"] == sentences * multiple, (metadata.counts, sentences * multiple)
    rows[str(multiple)] = {"path": path, "bytes": os.path.getsize(path), **timing,
                           "written": metadata.counts["written"], "vocab_size": metadata.vocab_size}
    shutil.rmtree(output_dir, ignore_errors=True)
  return rows


def memory_table(rows: dict) -> str:
  base = next(iter(rows.values()))
  table = []
  for multiple, r in rows.items():
    growth = r["peak_rss_mb"] - base["peak_rss_mb"]
    per_mb = "-" if r is base else f"{growth / ((r['bytes'] - base['bytes']) / 1e6):.1f}"
    table.append((f"x{multiple}", f"{r['bytes'] / 1e6:.1f}", f"{r['written']:,}", f"{r['vocab_size']:,}",
                  f"{r['seconds']:.1f}", f"{r['peak_rss_mb']:,.0f}", f"{growth:+,.0f}", per_mb))
  return common.report(
      "Memory: the demo corpus repeated (vocabulary fixed), 1 worker in-process", table,
      ["multiple", "corpus MB", "sentences written", "vocabulary", "wall s", "peak RSS MB", "vs x1",
       "RSS MB per corpus MB"])


def _synthetic_batches(distinct: int, per_batch: int, common_words: int = 2000):
  """count_tokens outputs for batches of new tokens plus common words seen in every batch."""
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
  """Counting state: bytes per distinct token that the vocabulary's combiner holds and peaks at
  (tracemalloc, in this process), against the `collections.Counter` accumulators it replaced."""
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
    timing = common.preprocess(path, output_dir, "--format", "text", "--task", "lm", "--max_vocab", max_vocab,
                               log_path=output_dir + ".log")
    rows[name] = {"mb": round(os.path.getsize(path) / 1e6, 1), **timing,
                  "vocab": contract.load_metadata(output_dir).vocab_size}
  rows["rss_ratio"] = round(rows["distinct"]["peak_rss_mb"] / rows["prose"]["peak_rss_mb"], 3)
  return rows


def main(argv=None):
  as_json = lambda result: print(json.dumps(result, indent=1))
  return common.main(__doc__, {
      "memory": (lambda args: memory(args.multiples), memory_table, memory.__doc__,
                 [(["--multiples"], {"type": int, "nargs": "+", "default": [1, 10, 100]})]),
      "counting": (lambda args: counting(args.distinct_m), as_json, counting.__doc__,
                   [(["--distinct_m"], {"type": float, "default": 2})]),
      "distinct": (lambda args: distinct(args.size_mb, args.max_vocab), as_json,
                   "Many distinct tokens: peak RSS on prose with every third word a new identifier, against the prose",
                   [(["--size_mb"], {"type": float, "default": 50}),
                    (["--max_vocab"], {"type": int, "default": 50000})]),
  }, argv=argv)


if __name__ == "__main__":
  sys.exit(main())
