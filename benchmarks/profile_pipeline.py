r"""Where the pipeline's time goes: cProfile of one in-process run, grouped by stage.

Runs `pipeline.preprocess.run` in this process with `--direct_num_workers 1` (Beam's
FnApiRunner with the embedded worker, so the DoFns run in this interpreter) under
cProfile, then reports (1) the time of each stage's entry points (cumulative) and (2) the
top functions by own time. Profiling slows Python-heavy code more than TF kernels, so
read the shares, not the absolute seconds.

Example:
  python -m benchmarks.profile_pipeline --corpus_mb 10 --out /tmp/rnn_bench/profile.json
"""

import argparse
import cProfile
import io
import logging
import os
import pstats
import shutil
import sys
import threading
import time
from typing import Dict, List

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import common  # pylint: disable=g-import-not-at-top
from benchmarks import corpus

# Stage → functions whose cumulative time is that stage's (file suffix, function name).
# A generator's cumulative time sums its resumptions, i.e. the work done for its output.
# Beam's operations and coders are compiled with Cython and invisible to cProfile: their
# time is the own time of bundle_processor's `process_encoded`, reported on its own row.
STAGES = {
    "pipeline construction, incl. TFT tracing the preprocessing_fn (build_pipeline)": [
        ("pipeline/preprocess.py", "build_pipeline")],
    "read: lines → records → pyarrow (ReadLinesDoFn.process)": [("pipeline/read.py", "process")],
    "  of which to_record_batch, text_record_batch (→ pyarrow columns)": [
        ("pipeline/read.py", "to_record_batch"), ("pipeline/read.py", "text_record_batch")],
    "  of which the split key (blake2b per record)": [("pipeline/read.py", "content_key"),
                                                     ("pipeline/read.py", "text_content_keys")],
    "split (_split_batch)": [("pipeline/read.py", "_split_batch")],
    "TFT graph runs: tokenize, vocabulary lookup, analyzers' batch ops (_RunMetaGraphDoFn)": [
        ("tensorflow_transform/beam/impl.py", "process")],
    "vocabulary: count_batch (a batch's distinct tokens grouped by their in-graph partition)": [
        ("pipeline/vocabulary.py", "count_batch")],
    "vocabulary: merge partitions, order, write": [("pipeline/vocabulary.py", "merge_counters"),
                                                   ("pipeline/vocabulary.py", "write")],
    "encode: EncodeDoFn.process (incl. building tables and tracing)": [("pipeline/encode.py", "process")],
    "  of which tf.function tracing (all tracing in the run, TFT's included)": [
        ("tensorflow/python/eager/polymorphic_function/tracing_compilation.py", "_create_concrete_function")],
    "write: assign_to_shards (tf.fingerprint per batch)": [("pipeline/write.py", "assign_to_shards")],
    "write: runs (temporary files per shard)": [("pipeline/write.py", "write_run")],
    "write: shards from runs (read runs, sort, TFRecordWriter)": [("pipeline/write.py", "write_shard")],
    "pickle.dumps/loads (elements between fused stages)": [("~", "<built-in method _pickle.dumps>"),
                                                           ("~", "<built-in method _pickle.loads>")],
    "finalize: metadata.json, vocab files, bucket DP": [("pipeline/preprocess.py", "finalize")],
}
# Beam's per-element machinery (Cython), mostly TFT's vocabulary count: one element per token.
PER_ELEMENT = ("apache_beam/runners/worker/bundle_processor.py", "process_encoded")


def _cumulative(stats: pstats.Stats, file_suffix: str, function: str) -> float:
  """Cumulative time of the matching functions (callees included)."""
  total = 0.0
  for (filename, _, name), (_, _, _, cumulative, _) in stats.stats.items():
    if name == function and (filename.endswith(file_suffix) or (file_suffix == "~" and filename == "~")):
      total += cumulative
  return total


def _own(stats: pstats.Stats, file_suffix: str, function: str) -> float:
  return sum(own for (filename, _, name), (_, _, own, _, _) in stats.stats.items()
             if name == function and filename.endswith(file_suffix))


def _calls(stats: pstats.Stats, function: str, file_suffix: str = "") -> int:
  return sum(calls for (filename, _, name), (_, calls, _, _, _) in stats.stats.items()
             if name == function and filename.endswith(file_suffix))


def stage_table(stats: pstats.Stats, total_seconds: float) -> List[dict]:
  rows = []
  for stage, functions in STAGES.items():
    seconds = sum(_cumulative(stats, file_suffix, function) for file_suffix, function in functions)
    rows.append({"stage": stage, "seconds": round(seconds, 2), "share": round(seconds / total_seconds, 3)})
  seconds = _own(stats, *PER_ELEMENT)
  rows.append({"stage": "Beam per-element execution, Cython (own time of process_encoded)",
               "seconds": round(seconds, 2), "share": round(seconds / total_seconds, 3)})
  return rows


def top_functions(stats: pstats.Stats, n: int, sort: str) -> List[dict]:
  entries = []
  for (filename, line, name), (_, calls, own, cumulative, _) in stats.stats.items():
    entries.append({"function": f"{_short(filename)}:{line}({name})", "calls": calls,
                    "own_s": round(own, 2), "cumulative_s": round(cumulative, 2)})
  key = "own_s" if sort == "own" else "cumulative_s"
  return sorted(entries, key=lambda e: e[key], reverse=True)[:n]


def _short(filename: str) -> str:
  for marker in ("site-packages/", "/work/main/"):
    if marker in filename:
      return filename.split(marker, 1)[1]
  return filename


def profile(corpus_path: str, output_dir: str, top: int = 30) -> dict:
  """Profiles one in-process pipeline run over `corpus_path`."""
  from pipeline import preprocess  # pylint: disable=g-import-not-at-top
  if os.path.exists(output_dir):
    shutil.rmtree(output_dir)
  argv = ["--input", corpus_path, "--output_dir", output_dir, "--format", "text", "--task", "lm",
          "--direct_num_workers", "1"]
  profiler = cProfile.Profile()
  # Bundles may run on Beam's worker threads: profile every thread that starts, too.
  thread_profilers: Dict[int, cProfile.Profile] = {}

  def start_thread_profile(*_):
    thread_profiler = cProfile.Profile()
    thread_profilers[threading.get_ident()] = thread_profiler
    thread_profiler.enable()  # replaces this hook for the rest of the thread

  threading.setprofile(start_thread_profile)
  start = time.perf_counter()
  profiler.enable()
  preprocess.run(argv)
  profiler.disable()
  seconds = time.perf_counter() - start
  threading.setprofile(None)
  for thread_profiler in thread_profilers.values():
    thread_profiler.disable()
  stats = pstats.Stats(profiler, stream=io.StringIO())
  for thread_profiler in thread_profilers.values():
    try:
      stats.add(thread_profiler)
    except TypeError:  # a thread that never ran Python code
      pass
  stats.dump_stats(os.path.join(os.path.dirname(output_dir), "pipeline.prof"))  # for pstats / snakeviz
  metadata = common.read_json(os.path.join(output_dir, "metadata.json"))
  tokens = sum(metadata["splits"][s]["tokens"] for s in ("train", "eval"))
  return {"seconds_profiled": round(seconds, 2), "tokens": tokens, "threads_profiled": len(thread_profilers),
          # The autograph-converted body runs once per trace.
          "encode_traces": _calls(stats, "_assemble_parts", "pipeline/encode.py"),  # runs once per trace
          "encode_batches": _calls(stats, "to_record_batch", "pipeline/read.py"),
          # CountCombineFn.add_input: TFT's unweighted vocabulary counts one element per token.
          "per_token_combine_calls": _calls(stats, "add_input", "apache_beam/transforms/combiners.py"),
          "stages": stage_table(stats, seconds), "top_own": top_functions(stats, top, "own"),
          "top_cumulative": top_functions(stats, top, "cumulative")}


def print_result(result: dict) -> str:
  text = common.report(
      f"Pipeline stages under cProfile ({result['seconds_profiled']} s profiled, {result['tokens']:,} tokens; "
      f"the encoder traced {result['encode_traces']} times; "
      f"{result['per_token_combine_calls']:,} CountCombineFn.add_input calls)",
      [(r["stage"], r["seconds"], f"{100 * r['share']:.0f}%") for r in result["stages"]],
      ["stage (entry points, cumulative; rows overlap where nested)", "seconds", "share of run"])
  text += common.report("Top functions by own time",
                        [(e["function"], e["calls"], e["own_s"], e["cumulative_s"]) for e in result["top_own"]],
                        ["function", "calls", "own s", "cumulative s"])
  return text


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_pipeline", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--corpus_mb", type=float, default=10)
  parser.add_argument("--out", default=None, help="JSON result (default: print only)")
  parser.add_argument("--top", type=int, default=30)
  parser.add_argument("--variants", default="", help="benchmarks.whatif variants to patch in first")
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.WARNING)
  if args.variants:
    from benchmarks import whatif  # pylint: disable=g-import-not-at-top
    whatif.apply(args.variants.split(","))
  corpus_path = corpus.build(args.corpus_mb)["path"]
  result = profile(corpus_path, os.path.join(common.work_dir(), "out", "profile"), args.top)
  print_result(result)
  if args.out:
    common.write_json(args.out, result)


if __name__ == "__main__":
  sys.exit(main())
