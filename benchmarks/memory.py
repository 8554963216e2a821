r"""Memory: peak RSS of the pipeline on the largest test corpus repeated 1x, 10x and 100x.

The corpus is the bundled demo (`data/demo/tagged.conll`), so the vocabulary stays fixed
and any growth of the peak RSS is data held. `pipeline.preprocess --direct_num_workers 1`
runs every stage in the one process whose peak RSS `wait4` reports; each run must write
every sentence.

Example:
  python -m benchmarks.memory --multiples 1,10,100
"""

import logging
import os
import shutil
import sys
from typing import Dict, Sequence

from benchmarks import common

DEMO = os.path.join(common.REPO, "data", "demo", "tagged.conll")


def build(multiple: int, work: str) -> dict:
  with open(DEMO, "rb") as f:
    text = f.read().rstrip(b"\n") + b"\n\n"
  path = os.path.join(work, "corpora", f"demo_x{multiple}.conll")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(text * multiple)
  sentences = text.count(b"\n\n") - text.count(b"-DOCSTART-")  # a -DOCSTART- block is filtered
  return {"path": path, "bytes": os.path.getsize(path), "sentences": sentences * multiple}


def measure(multiples: Sequence[int], work: str = None) -> Dict[str, dict]:
  work = common.work_dir(work)
  results = {}
  for multiple in multiples:
    corpus = build(multiple, work)
    output_dir = os.path.join(work, "out", f"memory_x{multiple}")
    argv = common.python_module("pipeline.preprocess", "--input", corpus["path"], "--output_dir", output_dir,
                                "--format", "conll", "--task", "tag", "--direct_num_workers", 1, "--overwrite")
    logging.info("x%d: %s", multiple, " ".join(argv))
    timing = common.run_timed(argv, os.path.join(work, "logs", f"memory_x{multiple}.log"))
    metadata = common.read_json(os.path.join(output_dir, "metadata.json"))
    counts = metadata["counts"]  # exit 0 means COMPLETED, and the count identity held
    assert counts["written"] == corpus["sentences"], (counts, corpus)
    results[str(multiple)] = {**corpus, **timing, "written": counts["written"],
                              "vocab_size": metadata["vocab"]["size"]}
    shutil.rmtree(output_dir, ignore_errors=True)
  return results


def print_tables(results: Dict[str, dict]) -> str:
  base = next(iter(results.values()))
  rows = []
  for multiple, r in results.items():
    growth = r["peak_rss_mb"] - base["peak_rss_mb"]
    per_mb = "-" if r is base else f"{growth / ((r['bytes'] - base['bytes']) / 1e6):.1f}"
    rows.append((f"x{multiple}", f"{r['bytes'] / 1e6:.1f}", f"{r['written']:,}", f"{r['vocab_size']:,}",
                 f"{r['seconds']:.1f}", f"{r['peak_rss_mb']:,.0f}", f"{growth:+,.0f}", per_mb))
  return common.report(
      "Memory: the demo corpus repeated (vocabulary fixed), 1 worker in-process", rows,
      ["multiple", "corpus MB", "sentences written", "vocabulary", "wall s", "peak RSS MB", "vs x1",
       "RSS MB per corpus MB"])


def main(argv=None):
  return common.main(__doc__, lambda args: measure([int(m) for m in args.multiples.split(",")]), print_tables,
                     (["--multiples"], {"default": "1,10,100"}), argv=argv)


if __name__ == "__main__":
  sys.exit(main())
