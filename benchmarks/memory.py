r"""Peak RSS of the pipeline process at two corpus sizes, next to its vocabulary size.

With `--direct_num_workers 1` Beam's FnApiRunner runs every stage in the launching
process, so that process's peak RSS (`wait4`) is the pipeline's. If memory is bounded
by batches and the vocabulary, the peak barely moves when the corpus grows tenfold.

Example:
  python -m benchmarks.memory --sizes_mb 10,100
"""

import argparse
import logging
import os
import sys
from typing import Dict

from benchmarks import common
from benchmarks import pipeline_throughput


def table(throughput: Dict[str, dict]) -> dict:
  """Peak RSS rows from pipeline_throughput results (its ours_1worker and handwritten runs)."""
  rows = {}
  for size, per_size in throughput.items():
    runs = per_size["runs"]
    if "ours_1worker" not in runs:
      continue
    metadata = common.read_json(os.path.join(runs["ours_1worker"]["output_dir"], "metadata.json"))
    rows[size] = {"corpus_bytes": per_size["corpus"]["bytes"], "tokens": runs["ours_1worker"]["tokens"],
                  "vocab_size": metadata["vocab"]["size"], "ours_1worker_peak_rss_mb": runs["ours_1worker"]["peak_rss_mb"],
                  "handwritten_peak_rss_mb": runs.get("handwritten", {}).get("peak_rss_mb"),
                  "ours_2workers_tree_peak_rss_mb": runs.get("ours", {}).get("peak_tree_rss_mb"),
                  "rss_timeline_1worker": runs["ours_1worker"].get("rss_timeline")}
  return rows


def print_tables(rows: dict) -> str:
  return common.report(
      "Peak RSS (MB) by corpus size",
      [(f"{size} MB", f"{r['tokens']:,}", f"{r['vocab_size']:,}", f"{r['ours_1worker_peak_rss_mb']:,.0f}",
        f"{r['ours_2workers_tree_peak_rss_mb']:,.0f}" if r["ours_2workers_tree_peak_rss_mb"] else "-",
        f"{r['handwritten_peak_rss_mb']:,.0f}" if r["handwritten_peak_rss_mb"] else "-")
       for size, r in rows.items()],
      ["corpus", "tokens", "vocabulary", "ours, 1 worker in-process", "ours, 2 workers (all processes)",
       "(a) hand-written (holds all tokens)"])


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--sizes_mb", default="10,100")
  parser.add_argument("--out", default=None)
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
  throughput = pipeline_throughput.measure([float(s) for s in args.sizes_mb.split(",")],
                                           ["handwritten", "ours_1worker"])
  rows = table(throughput)
  print_tables(rows)
  if args.out:
    common.write_json(args.out, rows)


if __name__ == "__main__":
  sys.exit(main())
