"""Helpers shared by the benchmarks: timed runs with peak RSS, pipeline runs, machine facts, JSON, CLIs."""

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_WORK_DIR = "/tmp/rnn_bench"  # corpora and outputs; never inside the repo


def work_dir(path: Optional[str] = None) -> str:
  path = path or os.environ.get("BENCH_WORK_DIR", DEFAULT_WORK_DIR)
  os.makedirs(path, exist_ok=True)
  return path


def _tree_rss_kb(pid: int, include_self: bool = True) -> int:
  """Resident KB of a process and all its descendants (Beam's worker processes too)."""
  try:
    with open(f"/proc/{pid}/status") as f:
      total = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) if include_self else 0
    children = []
    for task in os.listdir(f"/proc/{pid}/task"):  # a child belongs to the thread that started it
      with open(f"/proc/{pid}/task/{task}/children") as f:
        children += f.read().split()
  except (OSError, StopIteration):  # it exited meanwhile
    return 0
  return total + sum(_tree_rss_kb(int(child)) for child in children)


# Linux carries a process's peak RSS across fork and exec, so a command started from this
# process would report at least this process's own peak. A small launcher starts it instead
# and writes the command's `ru_maxrss` (from its `wait4`) to the file named first.
_LAUNCHER = """import os, sys
pid = os.fork()
if pid == 0:
  os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
  f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))"""


def run_timed(argv: Sequence[str], log_path: Optional[str] = None, sample_seconds: float = 0.5) -> dict:
  """Runs a command from the repo root: wall time, CPU time and two peak RSS figures.

  `peak_rss_mb` is the command's own peak (its `ru_maxrss`, through `_LAUNCHER`);
  `peak_tree_rss_mb` is the command and its descendants (Beam's workers), sampled every
  `sample_seconds`. CPU time includes the descendants'.

  Raises:
    RuntimeError: the command failed (its log's tail is in the message).
  """
  log_path = log_path or os.devnull
  if log_path != os.devnull:
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONHASHSEED": "0"}
  samples: List[int] = []
  with open(log_path, "w") as log, tempfile.NamedTemporaryFile("r") as peak:
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", _LAUNCHER, peak.name, *map(str, argv)], cwd=REPO, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    done = threading.Event()

    def sample():
      while not done.wait(sample_seconds):
        samples.append(_tree_rss_kb(process.pid, include_self=False))  # not the launcher

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    peak_kb = peak.read()
  process.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: Popen must not wait again
  if process.returncode != 0:
    tail = open(log_path).read()[-3000:] if log_path != os.devnull else ""
    raise RuntimeError(f"{' '.join(argv)} exited {process.returncode}:\n{tail}")
  return {"seconds": round(seconds, 3), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
          "peak_rss_mb": round(int(peak_kb) / 1024, 1), "peak_tree_rss_mb": round(max(samples, default=0) / 1024, 1)}


def python_module(module: str, *args) -> List[str]:
  return [sys.executable, "-m", module, *map(str, args)]


def preprocess(input_path: str, output_dir: str, *flags, log_path: Optional[str] = None) -> dict:
  """`python -m pipeline.preprocess --overwrite` on one input, timed by `run_timed`."""
  return run_timed(python_module("pipeline.preprocess", "--input", input_path, "--output_dir", output_dir,
                                 "--overwrite", *flags), log_path)


def machine() -> dict:
  """The facts a reader needs to compare numbers across machines, and the commit measured."""
  import importlib.metadata as metadata  # pylint: disable=g-import-not-at-top
  git = lambda *args: subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()
  with open("/proc/meminfo") as f:
    memory_kb = int(f.readline().split()[1])
  with open("/proc/cpuinfo") as f:
    cpu_model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
  return {"nproc": os.cpu_count(), "cpu": cpu_model, "memory_gb": round(memory_kb / 2**20, 1),
          "python": platform.python_version(), "platform": platform.platform(), "load_average": load_average(),
          "versions": {package: metadata.version(package) for package in (
              "tensorflow", "keras", "apache-beam", "tensorflow-transform", "tfx-bsl", "pyarrow", "numpy")},
          "git": {"commit": git("rev-parse", "HEAD"), "modified": git("status", "--short", "--untracked-files=no")}}


def load_average() -> List[float]:
  return [round(x, 2) for x in os.getloadavg()]


def read_json(path: str) -> dict:
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def write_json(path: str, value) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(value, f, indent=1)  # insertion order: tables read in the order measured
    f.write("\n")


def report(title: str, rows: Sequence[Sequence], header: Sequence[str]) -> str:
  """A Markdown table, printed and returned (BENCHMARKS.md takes them as they are)."""
  lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
  lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
  text = "\n".join(lines) + "\n"
  print(text, flush=True)
  return text


def parser(doc: str) -> argparse.ArgumentParser:
  """An entry point's parser, named as it is run (`python -m benchmarks.<module>`), `doc` as its help."""
  spec = getattr(sys.modules["__main__"], "__spec__", None)
  return argparse.ArgumentParser(prog=f"python -m {spec.name}" if spec else None, description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)


def main(doc: str, commands: Dict[Optional[str], tuple], argv=None) -> int:
  """An entry point: `commands` maps each subcommand (None: the module has just one) to
  (measure(args) → results, print_tables(results), help, flags as (names, kwargs) pairs).
  Each also takes --out, where its results go as JSON."""
  top = parser(doc)
  subcommands = None if None in commands else top.add_subparsers(dest="command", required=True)
  for name, (_, _, help_text, flags) in commands.items():
    command = top if name is None else subcommands.add_parser(name, help=help_text.split(":")[0],
                                                              description=help_text)
    for names, kwargs in (*flags, (["--out"], {"default": None, "help": "write the results here as JSON"})):
      command.add_argument(*names, **kwargs)
  args = top.parse_args(argv)
  measure, print_tables, _, _ = commands[getattr(args, "command", None)]
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
  results = measure(args)
  print_tables(results)
  if args.out:
    write_json(args.out, results)
  return 0
