r"""Load: the pipeline on the largest test corpus repeated 1x, 10x and 100x; peak RSS and time.

The largest corpus the tests run is the bundled demo (`data/demo/tagged.conll`, 4,000
tagged sentences). Repeating it keeps the vocabulary fixed, so any growth of the peak
RSS with the multiple is the pipeline holding data, not vocabulary. Each run is
`pipeline.preprocess --direct_num_workers 1` (every stage in the one process whose peak
RSS `wait4` reports) and is checked: exit 0, COMPLETED, read == written + filtered +
dead_letter, and every sentence written.

Example:
  python -m benchmarks.load --multiples 1,10,100
"""

import argparse
import json
import logging
import os
import shutil
import sys
from typing import Dict, Sequence

from benchmarks import common

DEMO = os.path.join(common.REPO, "data", "demo", "tagged.conll")


def build(multiple: int, work: str) -> dict:
  with open(DEMO, "rb") as f:
    text = f.read()
  if not text.endswith(b"\n\n"):
    text = text.rstrip(b"\n") + b"\n\n"
  path = os.path.join(work, "corpora", f"demo_x{multiple}.conll")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    for _ in range(multiple):
      f.write(text)
  sentences = text.count(b"\n\n") - text.count(b"-DOCSTART-")  # a -DOCSTART- block is filtered
  return {"path": path, "bytes": os.path.getsize(path), "sentences": sentences * multiple}


def measure(multiples: Sequence[int], work: str = None) -> Dict[str, dict]:
  work = common.work_dir(work)
  results = {}
  for multiple in multiples:
    corpus = build(multiple, work)
    output_dir = os.path.join(work, "out", f"load_x{multiple}")
    shutil.rmtree(output_dir, ignore_errors=True)
    argv = common.python_module("pipeline.preprocess", "--input", corpus["path"], "--output_dir", output_dir,
                                "--format", "conll", "--task", "tag", "--direct_num_workers", "1")
    logging.info("x%d: %s", multiple, " ".join(argv))
    timing = common.run_timed(argv, os.path.join(work, "logs", f"load_x{multiple}.log"))
    with open(os.path.join(output_dir, "metadata.json")) as f:
      metadata = json.load(f)
    counts = metadata["counts"]
    accounted = counts["written"] + sum(counts["filtered"].values()) + sum(counts["dead_letter"].values())
    assert os.path.exists(os.path.join(output_dir, "COMPLETED")), output_dir
    assert counts["read"] == accounted, counts
    assert counts["written"] == corpus["sentences"], (counts, corpus)
    results[str(multiple)] = {**corpus, **timing, "written": counts["written"],
                              "vocab_size": metadata["vocab"]["size"],
                              "output_bytes": common.directory_bytes(output_dir)}
    logging.info("  %.1f s, peak RSS %.0f MB", timing["seconds"], timing["peak_rss_mb"])
    shutil.rmtree(output_dir, ignore_errors=True)
  return results


def print_tables(results: Dict[str, dict]) -> str:
  base = next(iter(results.values()))
  rows = []
  for multiple, r in results.items():
    growth = r["peak_rss_mb"] - base["peak_rss_mb"]
    per_mb = growth / max((r["bytes"] - base["bytes"]) / 1e6, 1e-9) if r is not base else float("nan")
    rows.append((f"x{multiple}", f"{r['bytes'] / 1e6:.1f}", f"{r['written']:,}", f"{r['vocab_size']:,}",
                 f"{r['seconds']:.1f}", f"{r['peak_rss_mb']:,.0f}", f"{growth:+,.0f}",
                 "-" if r is base else f"{per_mb:.1f}"))
  return common.report(
      "Load: the demo corpus repeated (vocabulary fixed), 1 worker in-process", rows,
      ["multiple", "corpus MB", "sentences written", "vocabulary", "wall s", "peak RSS MB", "vs x1",
       "RSS MB per corpus MB"])


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--multiples", default="1,10,100")
  parser.add_argument("--out", default=None)
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
  results = measure([int(m) for m in args.multiples.split(",")])
  print_tables(results)
  if args.out:
    common.write_json(args.out, results)


if __name__ == "__main__":
  sys.exit(main())
