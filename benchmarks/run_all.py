r"""Runs every benchmark once and writes one JSON of results (and the tables as Markdown).

    corpora (10 and 100 MB of prose, assembled offline) → pipeline throughput (ours vs the
    hand-written script vs plain TFT, and what-if variants) and peak RSS → cProfile of our
    pipeline → stage micro-benchmarks → storage → padding waste → trainer input →
    training tokens/s → load (the demo corpus x1, x10, x100: peak RSS)

Everything generated goes under --work_dir (default /tmp/rnn_bench), never into the
repo. Each benchmark that imports TensorFlow runs in its own process, so one does not
warm up or slow down the next. Expect about an hour on 2 cores; `--quick` runs the whole
chain on small corpora in a few minutes, to check that it works.

Example:
  python -m benchmarks.run_all --out /tmp/rnn_bench/results.json
"""

import argparse
import logging
import os
import sys
import time

from benchmarks import common
from benchmarks import corpus
from benchmarks import memory
from benchmarks import pipeline_throughput

BENCHMARKS = ("throughput", "profile", "micro", "storage", "padding", "input", "training", "load")


def _module(work: str, name: str, module: str, *args) -> dict:
  """Runs one benchmark module in its own process; returns its JSON result."""
  out = os.path.join(work, "results", f"{name}.json")
  log = os.path.join(work, "logs", f"{name}.log")
  logging.info("%s: python -m %s %s (log: %s)", name, module, " ".join(map(str, args)), log)
  timing = common.run_timed(common.python_module(module, *args, "--out", out), log)
  logging.info("%s done in %.0f s", name, timing["seconds"])
  return common.read_json(out)


def _pipeline(work: str, name: str, *args) -> str:
  """Runs our pipeline (1 worker, in-process) for a benchmark's input data; returns OUTPUT_DIR."""
  output_dir = os.path.join(work, "out", name)
  common.run_timed(common.python_module("pipeline.preprocess", *args, "--output_dir", output_dir, "--overwrite",
                                        "--direct_num_workers", 1),
                   os.path.join(work, "logs", f"{name}.log"))
  return output_dir


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.run_all", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", default=None, help="results JSON (default: WORK_DIR/results.json)")
  parser.add_argument("--work_dir", default=None, help=f"default {common.DEFAULT_WORK_DIR} (or $BENCH_WORK_DIR)")
  parser.add_argument("--sizes_mb", default="10,100", help="corpus sizes for throughput and memory")
  parser.add_argument("--overhead_mb", type=float, default=0.1, help="tiny corpus for the fixed cost")
  parser.add_argument("--profile_mb", default=None,
                      help="corpus sizes to profile (default: the smallest and the largest)")
  parser.add_argument("--small_repeats", type=int, default=2,
                      help="runs per variant on the smallest corpus (the fastest is kept)")
  parser.add_argument("--large_repeats", type=int, default=1, help="runs per variant on the other corpora")
  parser.add_argument("--overhead_repeats", type=int, default=3, help="runs per variant on the tiny corpus")
  parser.add_argument("--input_repeats", type=int, default=1,
                      help="passes per trainer-input measurement over the largest corpus (best kept)")
  parser.add_argument("--only", default=",".join(BENCHMARKS), help=f"comma-separated subset of {BENCHMARKS}")
  parser.add_argument("--quick", action="store_true", help="small corpora (1 and 5 MB), few steps: a smoke test")
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
  work = common.work_dir(args.work_dir)
  os.environ["BENCH_WORK_DIR"] = work  # for the benchmark processes
  out = args.out or os.path.join(work, "results.json")
  sizes = [1.0, 5.0] if args.quick else [float(s) for s in args.sizes_mb.split(",")]
  small, large = min(sizes), max(sizes)
  only = set(args.only.split(","))
  start = time.time()

  results = {"machine": common.machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
             "command": " ".join(["python -m benchmarks.run_all"] + (argv if argv is not None else sys.argv[1:]))}
  results["corpora"] = {f"{s:g}": corpus.build(s) for s in sizes}
  tables = []

  if "throughput" in only:
    throughput = {}
    for size in sizes:
      throughput.update(pipeline_throughput.measure(
          [size], pipeline_throughput.VARIANTS, repeats=args.small_repeats if size == small else args.large_repeats,
          work=work))
    results["throughput"] = throughput
    overhead = pipeline_throughput.measure([args.overhead_mb], pipeline_throughput.VARIANTS,
                                           repeats=args.overhead_repeats, work=work)
    results["throughput_overhead"] = overhead
    results["throughput_marginal"] = pipeline_throughput.marginal(throughput, overhead)
    results["memory"] = memory.table(throughput)
    tables += [pipeline_throughput.print_tables(throughput),
               pipeline_throughput.print_marginal(results["throughput_marginal"], f"{args.overhead_mb:g}"),
               memory.print_tables(results["memory"])]

  if "profile" in only:
    from benchmarks import profile_pipeline  # pylint: disable=g-import-not-at-top
    profile_sizes = [float(s) for s in args.profile_mb.split(",")] if args.profile_mb else sorted({small, large})
    results["profile"] = {}
    for size in profile_sizes:
      results["profile"][f"{size:g}"] = _module(work, f"profile_{size:g}mb", "benchmarks.profile_pipeline",
                                                "--corpus_mb", size)
      tables.append(profile_pipeline.print_result(results["profile"][f"{size:g}"]))

  if "micro" in only:
    from benchmarks import micro  # pylint: disable=g-import-not-at-top
    encode_dir = os.path.join(work, "out", f"ours_1worker_{small:g}mb")
    extra = ["--data_dir", encode_dir] if os.path.exists(os.path.join(encode_dir, "COMPLETED")) else []
    results["micro"] = _module(work, "micro", "benchmarks.micro", "--corpus_mb", small, *extra)
    tables.append(micro.print_tables(results["micro"]))

  if "storage" in only:
    from benchmarks import storage  # pylint: disable=g-import-not-at-top
    plain = os.path.join(work, "out", f"ours_1worker_{small:g}mb")
    extra = ["--plain_dir", plain] if os.path.exists(os.path.join(plain, "COMPLETED")) else []
    results["storage"] = _module(work, "storage", "benchmarks.storage", "--corpus_mb", small, *extra)
    tables.append(storage.print_tables(results["storage"]))

  demo_dir = prose_dir = None
  if only & {"padding", "input", "training"}:
    demo_dir = _pipeline(work, "demo_tag", "--input", os.path.join(common.REPO, "data", "demo", "tagged.conll"),
                         "--format", "conll", "--task", "tag")
    prose_dir = os.path.join(work, "out", f"ours_{large:g}mb")
    if not os.path.exists(os.path.join(prose_dir, "COMPLETED")):
      prose_dir = _pipeline(work, f"prose_{large:g}mb", "--input", results["corpora"][f"{large:g}"]["path"],
                            "--format", "text", "--task", "lm")

  if "padding" in only:
    from benchmarks import padding  # pylint: disable=g-import-not-at-top
    results["padding"] = _module(work, "padding", "benchmarks.padding", "--data_dir", prose_dir, "--data_dir", demo_dir)
    tables.append(padding.print_tables(results["padding"]))

  if "input" in only:
    from benchmarks import input_pipeline  # pylint: disable=g-import-not-at-top
    results["input"] = _module(work, "input", "benchmarks.input_pipeline", "--data_dir", prose_dir,
                               "--repeats", args.input_repeats)
    tables.append(input_pipeline.print_tables(results["input"]))

  if "training" in only:
    from benchmarks import training  # pylint: disable=g-import-not-at-top
    # A capped vocabulary keeps the LM's softmax (and the pad-to-max run) within reach of 2 cores.
    lm_dir = _pipeline(work, "train_lm_8k", "--input", results["corpora"][f"{small:g}"]["path"], "--format", "text",
                       "--task", "lm", "--max_vocab", 8192)
    results["training"] = _module(work, "training", "benchmarks.training", "--data_dir", lm_dir,
                                  "--data_dir", demo_dir, "--steps", 10 if args.quick else 40)
    tables.append(training.print_tables(results["training"]))

  if "load" in only:
    from benchmarks import load  # pylint: disable=g-import-not-at-top
    results["load"] = load.measure([1, 10] if args.quick else [1, 10, 100], work)
    tables.append(load.print_tables(results["load"]))

  results["seconds"] = round(time.time() - start)
  results["load_average_end"] = common.load_average()
  common.write_json(out, results)
  markdown = os.path.splitext(out)[0] + ".md"
  with open(markdown, "w", encoding="utf-8") as f:
    f.write("\n".join(t for t in tables if t))
  print(f"\nResults: {out}\nTables: {markdown}\n({results['seconds']} s)")


if __name__ == "__main__":
  sys.exit(main())
