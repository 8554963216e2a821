r"""End-to-end tokens/s: our pipeline against the hand-written script and the plain TFT pipeline.

Every variant runs as its own process, timed from start to exit (imports, graph tracing
and writing included, as a user would see it), on the same corpus in the same run; each
is reported as a ratio against the hand-written script measured right before it. Peak
RSS is that process's own (`wait4`), so the `ours_1worker` rows (in-process runner, all
work in one process) are also the memory measurement.

Variants:
  handwritten   benchmarks.handwritten (single process, protobuf API)
  tft           benchmarks.tft_baseline (instance dicts, AnalyzeAndTransformDataset, Map, WriteToTFRecord)
  ours          python -m pipeline.preprocess --format text --task lm
                    --direct_num_workers 2 --direct_running_mode multi_processing
  ours_1worker  the same with --direct_num_workers 1 (in-process)
  whatif_gc     ours (2 workers) with benchmarks.whatif --variants gc_freeze: the GC freeze
                that pipeline.preprocess.run does in the launching process, done in each
                worker process too (in DoFn.setup)
  whatif_range  ours (2 workers) with benchmarks.whatif --variants range_mb=16: 16 MB read
                ranges instead of 64 MB, so the read has more than one or two units of work

A tiny corpus (--overhead_mb, default 0.1 MB) measures each variant's fixed cost
(imports, graph tracing, pipeline construction, runner start-up); the marginal rate
between it and the largest corpus is what the variant does per token once started.

Example:
  python -m benchmarks.pipeline_throughput --sizes_mb 10,100 --out /tmp/rnn_bench/throughput.json
"""

import argparse
import json
import logging
import os
import shutil
import sys
from typing import Dict, List, Sequence

from benchmarks import common
from benchmarks import corpus

VARIANTS = ("handwritten", "ours", "ours_1worker", "ours_2threads", "whatif_gc", "whatif_range", "tft")
WHATIF = {"whatif_gc": "gc_freeze", "whatif_range": "range_mb=16"}


def _pipeline_args(corpus_path: str, output_dir: str, *extra) -> List[str]:
  return ["--input", corpus_path, "--output_dir", output_dir, "--format", "text", "--task", "lm",
          "--overwrite", *extra]


def command(variant: str, corpus_path: str, output_dir: str, extra: Sequence[str] = ()) -> List[str]:
  """The exact command line of a variant."""
  if variant == "handwritten":
    return common.python_module("benchmarks.handwritten", "--input", corpus_path, "--output_dir", output_dir,
                                "--num_shards", 4, *extra)
  if variant == "tft":
    return common.python_module("benchmarks.tft_baseline", "--input", corpus_path, "--output_dir", output_dir,
                                "--num_shards", 4, *extra)
  if variant == "ours":
    return common.python_module("pipeline.preprocess", *_pipeline_args(corpus_path, output_dir, *extra),
                                "--direct_num_workers", 2, "--direct_running_mode", "multi_processing")
  if variant == "ours_2threads":
    return common.python_module("pipeline.preprocess", *_pipeline_args(corpus_path, output_dir, *extra),
                                "--direct_num_workers", 2, "--direct_running_mode", "multi_threading")
  if variant == "ours_1worker":
    return common.python_module("pipeline.preprocess", *_pipeline_args(corpus_path, output_dir, *extra),
                                "--direct_num_workers", 1)
  if variant in WHATIF:
    return common.python_module("benchmarks.whatif", "--variants", WHATIF[variant],
                                *_pipeline_args(corpus_path, output_dir, *extra),
                                "--direct_num_workers", 2, "--direct_running_mode", "multi_processing")
  raise ValueError(variant)


def output_tokens(variant: str, output_dir: str, log_path: str) -> int:
  """Tokens written (train + eval), from the variant's own report."""
  if variant in ("handwritten", "tft"):
    with open(log_path) as f:
      lines = [line for line in f if line.startswith("{")]
    result = json.loads(lines[-1])
    return sum(result["tokens"].values()) if isinstance(result["tokens"], dict) else result["tokens"]
  metadata = common.read_json(os.path.join(output_dir, "metadata.json"))
  return sum(metadata["splits"][split]["tokens"] for split in ("train", "eval"))


def measure(sizes_mb: Sequence[float], variants: Sequence[str], repeats: int = 1,
            keep_outputs: bool = True, work: str = None) -> Dict[str, dict]:
  """{size: {variant: timing}}, each the fastest of `repeats` runs."""
  work = common.work_dir(work)
  results = {}
  for size in sizes_mb:
    corpus_info = corpus.build(size)
    per_size = {"corpus": corpus_info, "runs": {}}
    for variant in variants:
      best = None
      for repeat in range(repeats):
        output_dir = os.path.join(work, "out", f"{variant}_{size:g}mb")
        if os.path.exists(output_dir):
          shutil.rmtree(output_dir)
        log_path = os.path.join(work, "logs", f"{variant}_{size:g}mb_{repeat}.log")
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        argv = command(variant, corpus_info["path"], output_dir)
        load = common.load_average()
        logging.info("%s on %g MB (load %s): %s", variant, size, load, " ".join(argv))
        timing = common.run_timed(argv, log_path)
        timing["tokens"] = output_tokens(variant, output_dir, log_path)
        timing["tokens_per_s"] = round(timing["tokens"] / timing["seconds"])
        timing["load_before"] = load
        timing["output_dir"] = output_dir
        timing["command"] = " ".join(argv).replace(sys.executable, "python")
        logging.info("  %.1f s, %d tokens/s, peak RSS %.0f MB", timing["seconds"], timing["tokens_per_s"],
                     timing["peak_rss_mb"])
        if best is None or timing["seconds"] < best["seconds"]:
          best = timing
      per_size["runs"][variant] = best
    baseline = per_size["runs"].get("handwritten")
    for timing in per_size["runs"].values():
      if baseline:
        timing["ratio_vs_handwritten"] = round(timing["tokens_per_s"] / baseline["tokens_per_s"], 3)
    results[f"{size:g}"] = per_size
    if not keep_outputs:
      for timing in per_size["runs"].values():
        shutil.rmtree(timing["output_dir"], ignore_errors=True)
  return results


LABELS = {
    "handwritten": "(a) hand-written script, 1 process",
    "tft": "(b) straightforward TFT pipeline, FnApiRunner",
    "ours": "ours, 2 workers multi_processing",
    "ours_1worker": "ours, 1 worker in-process",
    "ours_2threads": "ours, 2 workers multi_threading",
    "whatif_gc": "what-if: ours, 2 workers, GC frozen in the workers too",
    "whatif_range": "what-if: ours, 2 workers, 16 MB read ranges",
}


def print_tables(results: Dict[str, dict]) -> str:
  text = ""
  for size, per_size in results.items():
    c = per_size["corpus"]
    rows = []
    for variant, t in per_size["runs"].items():
      rows.append((LABELS[variant], f"{t['seconds']:.1f}", f"{t['tokens_per_s']:,}",
                   f"**{t.get('ratio_vs_handwritten', float('nan')):.2f}x**", f"{t['cpu_seconds']:.0f}",
                   f"{t['peak_tree_rss_mb']:,.0f}"))
    tokens = next(iter(per_size["runs"].values()))["tokens"]
    text += common.report(
        f"Pipeline throughput, {size} MB corpus ({c['lines']:,} lines, {tokens:,} tokens)", rows,
        ["variant", "wall s", "tokens/s", "vs (a)", "CPU s", "peak RSS MB (process tree)"])
  return text


def marginal(results: Dict[str, dict], overhead: Dict[str, dict]) -> Dict[str, dict]:
  """Fixed cost (tiny corpus) and tokens/s between it and each larger corpus, per variant."""
  tiny = next(iter(overhead.values()))["runs"]
  rows = {}
  for size, per_size in results.items():
    for variant, t in per_size["runs"].items():
      base = tiny.get(variant)
      if not base or t["seconds"] <= base["seconds"]:
        continue
      rate = (t["tokens"] - base["tokens"]) / (t["seconds"] - base["seconds"])
      rows.setdefault(variant, {"fixed_seconds": base["seconds"]})[f"marginal_tokens_per_s_{size}mb"] = round(rate)
  for size in results:
    key = f"marginal_tokens_per_s_{size}mb"
    reference = rows.get("handwritten", {}).get(key)
    for row in rows.values():
      if reference and key in row:
        row[f"marginal_vs_handwritten_{size}mb"] = round(row[key] / reference, 3)
  return rows


def print_marginal(rows: Dict[str, dict], overhead_mb: str) -> str:
  sizes = sorted({k.split("_")[-1] for row in rows.values() for k in row if k.startswith("marginal_tokens")},
                 key=lambda s: float(s[:-2]))
  table = []
  for variant, row in rows.items():
    cells = [LABELS[variant], f"{row['fixed_seconds']:.1f}"]
    for size in sizes:
      rate = row.get(f"marginal_tokens_per_s_{size}")
      ratio = row.get(f"marginal_vs_handwritten_{size}")
      cells.append(f"{rate:,} ({ratio:.2f}x)" if rate and ratio else "-")
    table.append(cells)
  return common.report(
      f"Fixed cost ({overhead_mb} MB corpus) and marginal throughput beyond it",
      table, ["variant", "fixed s"] + [f"marginal tokens/s to {s} (vs (a))" for s in sizes])


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.pipeline_throughput", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--sizes_mb", default="10,100", help="comma-separated corpus sizes in MB")
  parser.add_argument("--variants", default=",".join(VARIANTS))
  parser.add_argument("--repeats", type=int, default=1, help="runs per variant; the fastest is kept")
  parser.add_argument("--overhead_mb", type=float, default=0.1, help="tiny corpus for the fixed cost; 0 = skip")
  parser.add_argument("--out", default=None)
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
  variants = args.variants.split(",")
  results = measure([float(s) for s in args.sizes_mb.split(",")], variants, args.repeats)
  print_tables(results)
  output = {"sizes": results}
  if args.overhead_mb:
    overhead = measure([args.overhead_mb], variants, args.repeats)
    output["overhead"] = overhead
    output["marginal"] = marginal(results, overhead)
    print_marginal(output["marginal"], f"{args.overhead_mb:g}")
  if args.out:
    common.write_json(args.out, output)


if __name__ == "__main__":
  sys.exit(main())
