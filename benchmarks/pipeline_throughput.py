r"""End-to-end tokens/s of our pipeline, the hand-written script (a) and the plain TFT pipeline (b).

Each variant is its own process, timed from start to exit, on the same corpus in the same
run, and reported against (a) in that run (`command` gives each variant's command line).
With three sizes or more, a line fitted through our runs gives the seconds per MB above a
fixed start-up cost. `storage` measures bytes per token of our shards, without and with
`--compression gzip`.

Examples:
  python -m benchmarks.pipeline_throughput --sizes_mb 10,100 --out /tmp/rnn_bench/throughput.json
  python -m benchmarks.pipeline_throughput --sizes_mb 100,300,1000 --variants ours
"""

import json
import logging
import os
import shutil
import statistics
import sys
from typing import Dict, List, Sequence

import quiet  # pylint: disable=unused-import  (first: before TensorFlow is imported)
import contract
from benchmarks import common, corpus

VARIANTS = ("handwritten", "ours", "ours_1worker", "tft")
# Our pipeline on each local runner: its runner flags (benchmarks/runners.py measures them all).
RUNNER_FLAGS = {
    "ours": ["--runner", "DirectRunner", "--direct_num_workers", 2, "--direct_running_mode", "multi_processing"],
    "ours_1worker": ["--runner", "DirectRunner", "--direct_num_workers", 1],
    "prism": ["--runner", "PrismRunner"],
    "prism_process": ["--runner", "PrismRunner", "--environment_type", "PROCESS"],
}
LABELS = {"handwritten": "(a) hand-written script, 1 process", "tft": "(b) straightforward TFT pipeline, FnApiRunner",
          "ours": "ours, DirectRunner, 2 worker processes (multi_processing)",
          "ours_1worker": "ours, DirectRunner, in-process",
          "prism": "ours, Prism, LOOPBACK worker (in the driver)",
          "prism_process": "ours, Prism, PROCESS workers (boot)"}


def command(variant: str, corpus_path: str, output_dir: str, extra: Sequence[str] = ()) -> List[str]:
  """The exact command line of a variant."""
  if variant in ("handwritten", "tft"):
    module = "benchmarks.handwritten" if variant == "handwritten" else "benchmarks.tft_baseline"
    return common.python_module(module, "--input", corpus_path, "--output_dir", output_dir, "--num_shards", 4,
                                *extra)
  return common.python_module("pipeline.preprocess", "--input", corpus_path, "--output_dir", output_dir,
                              "--format", "text", "--task", "lm", "--overwrite", *RUNNER_FLAGS[variant], *extra)


def output_tokens(variant: str, output_dir: str, log_path: str) -> int:
  """Tokens written (train + eval), from the variant's own report."""
  if variant in ("handwritten", "tft"):
    with open(log_path) as f:
      result = json.loads([line for line in f if line.startswith("{")][-1])
    return sum(result["tokens"].values()) if isinstance(result["tokens"], dict) else result["tokens"]
  metadata = contract.load_metadata(output_dir)
  return sum(metadata.tokens(split) for split in contract.SPLITS)


def measure(sizes_mb: Sequence[float], variants: Sequence[str], repeats: int = 1, work: str = None) -> Dict[str, dict]:
  """{size: {"corpus": ..., "runs": {variant: timing}}}, each timing the fastest of `repeats` runs."""
  work = common.work_dir(work)
  results = {}
  for size in sizes_mb:
    corpus_info = corpus.build(size)
    runs = {}
    for variant in variants:
      for repeat in range(repeats):
        output_dir = os.path.join(work, "out", f"{variant}_{size:g}mb")
        shutil.rmtree(output_dir, ignore_errors=True)
        log_path = os.path.join(work, "logs", f"{variant}_{size:g}mb_{repeat}.log")
        argv = command(variant, corpus_info["path"], output_dir)
        logging.info("%s on %g MB (load %s): %s", variant, size, common.load_average(), " ".join(argv))
        timing = common.run_timed(argv, log_path)
        timing["tokens"] = output_tokens(variant, output_dir, log_path)
        timing["tokens_per_s"] = round(timing["tokens"] / timing["seconds"])
        timing["output_dir"] = output_dir
        timing["command"] = " ".join(map(str, argv)).replace(sys.executable, "python")
        logging.info("  %.1f s, %d tokens/s, peak RSS %.0f MB", timing["seconds"], timing["tokens_per_s"],
                     timing["peak_rss_mb"])
        if variant not in runs or timing["seconds"] < runs[variant]["seconds"]:
          runs[variant] = timing
    if "handwritten" in runs:
      for timing in runs.values():
        timing["ratio_vs_handwritten"] = round(timing["tokens_per_s"] / runs["handwritten"]["tokens_per_s"], 3)
    results[f"{size:g}"] = {"corpus": corpus_info, "runs": runs}
  return results


def linear_fit(results: Dict[str, dict], variant: str) -> dict:
  """Least-squares seconds = fixed + slope * MB through a variant's sizes, and each size's seconds
  per MB above that fixed cost; `spread` is how far they stray from their midpoint (±)."""
  mb = [float(size) for size in results]
  seconds = [per_size["runs"][variant]["seconds"] for per_size in results.values()]
  slope, fixed = statistics.linear_regression(mb, seconds)
  per_mb = {f"{x:g}": (y - fixed) / x for x, y in zip(mb, seconds)}
  low, high = min(per_mb.values()), max(per_mb.values())
  return {"fixed_seconds": round(fixed, 2), "s_per_mb": round(slope, 4),
          "spread": round((high - low) / (high + low), 4),
          "s_per_mb_above_fixed": {size: round(value, 4) for size, value in per_mb.items()}}


def print_tables(results: Dict[str, dict]) -> str:
  text = ""
  for size, per_size in results.items():
    rows = [(LABELS[variant], f"{t['seconds']:.1f}", f"{t['tokens_per_s']:,}",
             f"**{t['ratio_vs_handwritten']:.2f}x**" if "ratio_vs_handwritten" in t else "-", f"{t['cpu_seconds']:.0f}",
             f"{t['peak_tree_rss_mb']:,.0f}") for variant, t in per_size["runs"].items()]
    tokens = next(iter(per_size["runs"].values()))["tokens"]
    text += common.report(
        f"Pipeline throughput, {size} MB corpus ({per_size['corpus']['lines']:,} lines, {tokens:,} tokens)", rows,
        ["variant", "wall s", "tokens/s", "vs (a)", "CPU s", "peak RSS MB (process tree)"])
  for variant in RUNNER_FLAGS:
    if len(results) > 2 and all(variant in per_size["runs"] for per_size in results.values()):
      fit = linear_fit(results, variant)
      rows = [(size, f"{r['runs'][variant]['seconds']:.1f}", f"{r['runs'][variant]['cpu_seconds']:.1f}",
               f"{fit['s_per_mb_above_fixed'][size]:.3f}", f"{r['runs'][variant]['peak_rss_mb']:,.0f}",
               f"{r['runs'][variant]['peak_tree_rss_mb']:,.0f}") for size, r in results.items()]
      text += common.report(
          f"Linear cost, {LABELS[variant]}: {fit['s_per_mb']:.3f} s per MB above a fitted {fit['fixed_seconds']:.1f} s "
          f"(±{100 * fit['spread']:.1f}%)", rows,
          ["corpus MB", "wall s", "CPU s", "s/MB above the fitted fixed cost", "peak RSS MB, runner",
           "peak RSS MB, all processes"])
  return text


def storage(corpus_mb: float, plain_dir: str = None, work: str = None) -> dict:
  """Bytes per token of our shards, plain (`plain_dir`, else a new run) and gzipped (a new run)."""
  work = common.work_dir(work)
  results = {"corpus_mb": corpus_mb}
  for compression, data_dir in (("none", plain_dir), ("gzip", None)):
    if data_dir is None:
      data_dir = os.path.join(work, "out", f"storage_{compression}_{corpus_mb:g}mb")
      argv = command("ours_1worker", corpus.build(corpus_mb)["path"], data_dir, ["--compression", compression])
      common.run_timed(argv, os.path.join(work, "logs", f"storage_{compression}.log"))
    metadata = contract.load_metadata(data_dir)
    size = sum(os.path.getsize(os.path.join(data_dir, name)) for name in os.listdir(data_dir) if ".tfrecord" in name)
    results[compression] = {"bytes": size, "tokens": sum(metadata.tokens(split) for split in contract.SPLITS),
                            "examples": sum(metadata.examples(split) for split in contract.SPLITS)}
  return results


def print_storage(results: dict) -> str:
  none = results["none"]
  rows = [(f"shards, --compression {c}", f"{r['bytes']:,}", f"{r['bytes'] / r['tokens']:.2f}",
           f"{r['bytes'] / none['bytes']:.2f}") for c, r in results.items() if c != "corpus_mb"]
  return common.report(f"Storage, {results['corpus_mb']:g} MB corpus ({none['tokens']:,} tokens, "
                       f"{none['examples']:,} sequences)", rows, ["output", "bytes", "bytes/token", "vs none"])


def main(argv=None):
  flags = [(["--sizes_mb"], {"default": "10,100", "help": "comma-separated corpus sizes in MB"}),
           (["--variants"], {"default": ",".join(VARIANTS)}),
           (["--repeats"], {"type": int, "default": 1, "help": "runs per variant; the fastest is kept"})]
  run = lambda args: measure([float(s) for s in args.sizes_mb.split(",")], args.variants.split(","), args.repeats)
  return common.main(__doc__, {None: (run, print_tables, None, flags)}, argv=argv)


if __name__ == "__main__":
  sys.exit(main())
