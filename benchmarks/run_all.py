r"""Runs the core benchmarks once; writes one JSON of results and the tables as Markdown.

Corpora, then pipeline throughput, storage, padding, trainer input, training and memory
(`--only` picks some); scale, WordPiece and the LM oracle run on their own (BENCHMARKS.md).
Everything generated goes under --work_dir, never into the repo; a benchmark that imports
TensorFlow runs in its own process, so one does not warm up the next.

Example:
  python -m benchmarks.run_all --out /tmp/rnn_bench/results.json
"""

import logging
import os
import sys
import time

from benchmarks import batching, common, corpus, pipeline_throughput, scale

BENCHMARKS = ("throughput", "storage", "padding", "input", "training", "memory")


def _batching(work: str, tables: list, command: str, *args) -> list:
  """Runs `benchmarks.batching <command>` in its own process; returns its results, adds its tables."""
  out = os.path.join(work, "results", f"{command}.json")
  logging.info("%s: python -m benchmarks.batching %s %s", command, command, " ".join(map(str, args)))
  common.run_timed(common.python_module("benchmarks.batching", command, *args, "--out", out),
                   os.path.join(work, "logs", f"{command}.log"))
  results = common.read_json(out)
  tables.append("".join(batching.TABLES[command](result) for result in results))
  return results


def _pipeline(work: str, name: str, input_path: str, *args) -> str:
  """Runs our pipeline (1 worker, in-process) unless its output exists; returns OUTPUT_DIR."""
  output_dir = os.path.join(work, "out", name)
  if not os.path.exists(os.path.join(output_dir, "COMPLETED")):
    common.preprocess(input_path, output_dir, *args, "--direct_num_workers", 1,
                      log_path=os.path.join(work, "logs", f"{name}.log"))
  return output_dir


def main(argv=None):
  parser = common.parser(__doc__)
  parser.add_argument("--out", default=None, help="results JSON (default: WORK_DIR/results.json)")
  parser.add_argument("--work_dir", default=None, help=f"default {common.DEFAULT_WORK_DIR} (or $BENCH_WORK_DIR)")
  parser.add_argument("--sizes_mb", default="10,100", help="corpus sizes for throughput")
  parser.add_argument("--input_repeats", type=int, default=3, help="passes per trainer-input row (best kept)")
  parser.add_argument("--only", default=",".join(BENCHMARKS), help=f"comma-separated subset of {BENCHMARKS}")
  parser.add_argument("--quick", action="store_true", help="small corpora (1 and 2 MB), few steps: a smoke test")
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
  work = common.work_dir(args.work_dir)
  os.environ["BENCH_WORK_DIR"] = work  # for the benchmark processes
  sizes = [1.0, 2.0] if args.quick else [float(s) for s in args.sizes_mb.split(",")]
  small, large = min(sizes), max(sizes)
  only = set(args.only.split(","))
  start = time.time()
  results = {"machine": common.machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
             "command": " ".join(["python -m benchmarks.run_all"] + (argv if argv is not None else sys.argv[1:]))}
  results["corpora"] = {f"{s:g}": corpus.build(s) for s in sizes}
  tables = []
  if "throughput" in only:
    results["throughput"] = pipeline_throughput.measure(sizes, pipeline_throughput.VARIANTS, work=work)
    tables.append(pipeline_throughput.print_tables(results["throughput"]))
  if "storage" in only:
    plain = os.path.join(work, "out", f"ours_1worker_{small:g}mb")  # the throughput run's output, if any
    results["storage"] = pipeline_throughput.storage(
        small, plain if os.path.exists(os.path.join(plain, "COMPLETED")) else None, work)
    tables.append(pipeline_throughput.print_storage(results["storage"]))
  lm_dir = _pipeline(work, f"ours_1worker_{large:g}mb", results["corpora"][f"{large:g}"]["path"],
                     "--format", "text", "--task", "lm") if only & {"padding", "input"} else None
  demo_dir = (_pipeline(work, "demo_tag", scale.DEMO, "--format", "conll", "--task", "tag")
              if only & {"padding", "training"} else None)
  if "padding" in only:
    results["padding"] = _batching(work, tables, "padding", "--data_dir", lm_dir, "--data_dir", demo_dir)
  if "input" in only:
    results["input"] = _batching(work, tables, "input", "--data_dir", lm_dir, "--repeats", args.input_repeats)
  if "training" in only:
    # A capped vocabulary keeps the LM's softmax (and the pad-to-max run) within reach of 2 cores.
    lm_8k = _pipeline(work, f"train_lm_8k_{small:g}mb", results["corpora"][f"{small:g}"]["path"],
                      "--format", "text", "--task", "lm", "--max_vocab", 8192)
    results["training"] = _batching(work, tables, "training", "--data_dir", lm_8k, "--data_dir", demo_dir,
                                    "--steps", 10 if args.quick else 40)
  if "memory" in only:
    results["memory"] = scale.memory([1, 10] if args.quick else [1, 10, 100], work)
    tables.append(scale.memory_table(results["memory"]))
  results["seconds"] = round(time.time() - start)
  out = args.out or os.path.join(work, "results.json")
  common.write_json(out, results)
  with open(os.path.splitext(out)[0] + ".md", "w", encoding="utf-8") as f:
    f.write("\n".join(tables))
  print(f"\nResults: {out}\nTables: {os.path.splitext(out)[0]}.md\n({results['seconds']} s)")


if __name__ == "__main__":
  sys.exit(main())
