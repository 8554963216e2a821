r"""Our pipeline on each local runner, side by side in one run, and where its start-up goes.

The runners (`pipeline_throughput.RUNNER_FLAGS`): Beam's in-process Python runner, the same
with 2 worker processes (multi_processing), Prism with its LOOPBACK worker (the driver
process), and Prism with PROCESS workers started by boot; the hand-written script is the
ratio's baseline. For each: wall time, CPU seconds (every process), peak RSS of all
processes, and a line through the sizes: the fixed cost and the seconds per MB above it.

The start-up breakdown (`startup`): imports per process, pipeline construction (where TFT
traces the preprocessing_fn), the job itself on 1 MB, what boot does before a PROCESS
worker's Python starts, and Prism's own start.

Examples:
  python -m benchmarks.runners --sizes_mb 1,100 --out /tmp/rnn_bench/runners.json
  python -m benchmarks.runners --sizes_mb 1,100,300 --variants handwritten,ours_1worker,prism
"""

import json
import logging
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, Sequence

from benchmarks import common, corpus, pipeline_throughput

VARIANTS = ("handwritten", "ours_1worker", "ours", "prism", "prism_process")

# Run in a fresh interpreter: the driver's phases, timed from the first line. Cumulative
# imports, then pipeline.preprocess.run with its pipeline construction and its job timed.
_PHASES = r"""
import json, sys, time
start = time.perf_counter()
phases = {}
def mark(name, since=[start]):
  now = time.perf_counter()
  phases[name] = round(now - since[0], 3)
  since[0] = now
import quiet
mark("import tensorflow (quiet)")
import apache_beam
mark("import apache_beam")
import tensorflow_transform.beam
mark("import tensorflow_transform.beam")
from pipeline import preprocess, runners
mark("import pipeline.preprocess (the rest)")
build, run = preprocess.build_pipeline, runners.run
def timed_build(*args):
  mark("arguments, inputs, options")
  build(*args)
  mark("pipeline construction (TFT traces the preprocessing_fn)")
def timed_run(pipeline):
  mark("before the job")
  result = run(pipeline)
  mark("the job (runner and workers start, every stage)")
  return result
preprocess.build_pipeline, runners.run = timed_build, timed_run
code = preprocess.run(sys.argv[1:])
mark("after the job (metadata.json, vocabularies)")
print("PHASES " + json.dumps({"code": code, "phases": phases, "seconds": round(time.perf_counter() - start, 3)}))
"""


def _seconds(argv: Sequence[str], repeats: int = 2) -> float:
  """Wall seconds of a command (the fastest of `repeats`), from the repo root."""
  best = float("inf")
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
  for _ in range(repeats):
    start = time.perf_counter()
    subprocess.run(list(argv), cwd=common.REPO, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    best = min(best, time.perf_counter() - start)
  return round(best, 3)


def startup(corpus_path: str, variants: Sequence[str], work: str) -> dict:
  """Where the fixed cost goes: a table of seconds per phase and process."""
  from pipeline import prism, runners  # pylint: disable=g-import-not-at-top
  python = sys.executable
  results = {"processes": {
      "python alone": _seconds([python, "-c", "pass"]),
      "driver: import quiet (TensorFlow)": _seconds([python, "-c", "import quiet"]),
      "driver: all its imports (pipeline.preprocess)": _seconds([python, "-c", "import quiet, pipeline.preprocess"]),
      "SDK worker: import sdk_worker_main": _seconds(
          [python, "-c", "import apache_beam.runners.worker.sdk_worker_main"]),
      "SDK worker: + what our DoFns import (TF, TFT, pipeline)": _seconds(
          [python, "-c", "import apache_beam.runners.worker.sdk_worker_main, quiet, pipeline.preprocess"]),
      "boot: pip freeze --all (it runs it twice)": _seconds([python, "-m", "pip", "freeze", "--all"]),
      "boot: pip show apache-beam": _seconds([python, "-m", "pip", "show", "apache-beam"]),
      "driver: pip freeze (staging for a portable runner)": _seconds([python, "-m", "pip", "freeze"]),
  }}
  start = time.perf_counter()
  token = runners.new_token()
  with prism.started_prism(prism.binary("prism"), os.path.join(work, "prism_start"), token):
    results["processes"]["Prism: start until it listens"] = round(time.perf_counter() - start, 3)
  results["phases"] = {}
  for variant in variants:
    if variant in ("handwritten", "tft"):
      continue
    output_dir = os.path.join(work, "out", f"startup_{variant}")
    argv = [python, "-c", _PHASES, "--input", corpus_path, "--output_dir", output_dir, "--format", "text",
            "--task", "lm", "--overwrite", *map(str, pipeline_throughput.RUNNER_FLAGS[variant])]
    process = subprocess.run(argv, cwd=common.REPO, capture_output=True, text=True,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    line = [l for l in process.stdout.splitlines() if l.startswith("PHASES ")]
    if process.returncode != 0 or not line:
      raise RuntimeError(f"{variant}: {process.stderr[-3000:]}")
    results["phases"][variant] = json.loads(line[-1][len("PHASES "):])
    logging.info("start-up of %s: %s", variant, results["phases"][variant])
  return results


def fit(results: Dict[str, dict], variant: str) -> dict:
  """seconds = fixed + slope * MB through a variant's sizes (least squares; exact for two)."""
  mb = [float(size) for size in results]
  seconds = [per_size["runs"][variant]["seconds"] for per_size in results.values()]
  slope, fixed = statistics.linear_regression(mb, seconds)
  return {"fixed_seconds": round(fixed, 2), "s_per_mb": round(slope, 4),
          "s_per_mb_above_fixed": {size: round((y - fixed) / x, 4) for size, x, y in zip(results, mb, seconds)}}


def print_tables(results: dict) -> str:
  text = pipeline_throughput.print_tables(results["throughput"])
  throughput = results["throughput"]
  if len(throughput) >= 2:
    rows = []
    for variant in results["variants"]:
      if variant in pipeline_throughput.RUNNER_FLAGS:
        line = fit(throughput, variant)
        rows.append((pipeline_throughput.LABELS[variant], f"{line['fixed_seconds']:.1f}", f"{line['s_per_mb']:.3f}",
                     *(f"{per_size['runs'][variant]['cpu_seconds']:.0f}" for per_size in throughput.values()),
                     *(f"{per_size['runs'][variant]['peak_tree_rss_mb']:,.0f}" for per_size in throughput.values())))
    sizes = list(throughput)
    text += common.report(
        f"Runners: fixed cost and seconds per MB (a line through {', '.join(sizes)} MB)", rows,
        ["runner", "fixed s", "s/MB", *(f"CPU s, {size} MB" for size in sizes),
         *(f"peak RSS MB (all processes), {size} MB" for size in sizes)])
  if "startup" in results:
    processes = results["startup"]["processes"]
    text += common.report("Start-up: one process each, wall seconds (fastest of 2)",
                          [(name, f"{seconds:.2f}") for name, seconds in processes.items()], ["what", "s"])
    phases = results["startup"]["phases"]
    names = list(next(iter(phases.values()))["phases"])
    rows = [(name, *(f"{phases[variant]['phases'].get(name, 0):.2f}" for variant in phases)) for name in names]
    rows.append(("**total**", *(f"**{phases[variant]['seconds']:.2f}**" for variant in phases)))
    text += common.report("Start-up: the driver's phases on 1 MB, seconds",
                          rows, ["phase", *(pipeline_throughput.LABELS[variant] for variant in phases)])
  return text


def measure(sizes_mb: Sequence[float], variants: Sequence[str], with_startup: bool) -> dict:
  work = common.work_dir()
  results = {"machine": common.machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
             "variants": list(variants),
             "throughput": pipeline_throughput.measure(sizes_mb, variants, work=work)}
  if with_startup:
    results["startup"] = startup(corpus.build(min(sizes_mb))["path"], variants, work)
  results["load_average_after"] = common.load_average()
  return results


def main(argv=None):
  flags = [(["--sizes_mb"], {"default": "1,100", "help": "comma-separated corpus sizes in MB (300: the 3rd size)"}),
           (["--variants"], {"default": ",".join(VARIANTS)}),
           (["--no_startup"], {"action": "store_true", "help": "skip the start-up breakdown"})]
  run = lambda args: measure([float(s) for s in args.sizes_mb.split(",")], args.variants.split(","),
                             not args.no_startup)
  return common.main(__doc__, {None: (run, print_tables, None, flags)}, argv=argv)


if __name__ == "__main__":
  sys.exit(main())
