"""Helpers shared by the benchmarks: subprocess timing with peak RSS, machine facts, JSON."""

import json
import os
import platform
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Sequence, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_WORK_DIR = "/tmp/rnn_bench"  # corpora and outputs; never inside the repo


def work_dir(path: Optional[str] = None) -> str:
  path = path or os.environ.get("BENCH_WORK_DIR", DEFAULT_WORK_DIR)
  os.makedirs(path, exist_ok=True)
  return path


def _tree_rss_kb(root: int) -> int:
  """Resident KB of a process and all its descendants (Beam's worker processes too)."""
  children: Dict[int, List[int]] = {}
  for entry in os.listdir("/proc"):
    if entry.isdigit():
      try:
        with open(f"/proc/{entry}/stat") as f:
          parent = int(f.read().rsplit(")", 1)[1].split()[1])
      except (OSError, IndexError, ValueError):
        continue
      children.setdefault(parent, []).append(int(entry))
  total, stack = 0, [root]
  while stack:
    pid = stack.pop()
    stack.extend(children.get(pid, []))
    try:
      with open(f"/proc/{pid}/status") as f:
        for line in f:
          if line.startswith("VmRSS:"):
            total += int(line.split()[1])
            break
    except OSError:
      pass
  return total


def run_timed(argv: Sequence[str], log_path: Optional[str] = None, env: Optional[Dict[str, str]] = None,
              sample_seconds: float = 0.5) -> dict:
  """Runs a command from the repo root; wall time, CPU time and peak RSS.

  `peak_rss_mb` is that process's own peak (`os.wait4` returns the rusage of exactly this
  child and the children it reaped, so runs measured one after the other do not mix, as
  `RUSAGE_CHILDREN` would). `peak_tree_rss_mb` sums the process and its descendants,
  sampled every `sample_seconds`, which is what counts when Beam starts worker processes;
  `rss_timeline` keeps (seconds, MB) samples of that sum, about 60 of them.

  Raises:
    RuntimeError: the command failed (its log's tail is in the message).
  """
  log_path = log_path or os.devnull
  if log_path != os.devnull:
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
  full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONHASHSEED": "0", **(env or {})}
  samples: List[Tuple[float, int]] = []
  with open(log_path, "w") as log:
    start = time.perf_counter()
    process = subprocess.Popen(list(argv), cwd=REPO, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    done = threading.Event()

    def sample():
      while not done.wait(sample_seconds):
        samples.append((time.perf_counter() - start, _tree_rss_kb(process.pid)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
  process.returncode = os.waitstatus_to_exitcode(status)
  if process.returncode != 0:
    tail = open(log_path).read()[-3000:] if log_path != os.devnull else ""
    raise RuntimeError(f"{' '.join(argv)} exited {process.returncode}:\n{tail}")
  step = max(1, len(samples) // 60)
  return {"seconds": round(seconds, 3), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
          "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
          "peak_tree_rss_mb": round(max((kb for _, kb in samples), default=0) / 1024, 1),
          "rss_timeline": [(round(t, 1), round(kb / 1024)) for t, kb in samples[::step]]}


def python_module(module: str, *args) -> List[str]:
  return [sys.executable, "-m", module, *map(str, args)]


def git_state() -> dict:
  """The commit measured and whether the working tree differs (read-only git commands)."""
  def git(*args):
    try:
      return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
      return None
  return {"commit": git("rev-parse", "HEAD"), "subject": git("log", "-1", "--format=%s"),
          "modified": git("status", "--short", "--untracked-files=no")}


def machine() -> dict:
  """The facts a reader needs to compare numbers across machines."""
  import importlib.metadata as metadata  # pylint: disable=g-import-not-at-top
  versions = {}
  for package in ("tensorflow", "keras", "apache-beam", "tensorflow-transform", "tfx-bsl", "pyarrow",
                  "numpy", "protobuf", "regex"):
    try:
      versions[package] = metadata.version(package)
    except metadata.PackageNotFoundError:
      versions[package] = None
  with open("/proc/meminfo") as f:
    memory_kb = int(f.readline().split()[1])
  cpu_model = ""
  with open("/proc/cpuinfo") as f:
    for line in f:
      if line.startswith("model name"):
        cpu_model = line.split(":", 1)[1].strip()
        break
  return {"nproc": os.cpu_count(), "cpu": cpu_model, "memory_gb": round(memory_kb / 2**20, 1),
          "python": platform.python_version(), "platform": platform.platform(),
          "load_average": load_average(), "versions": versions, "git": git_state()}


def load_average() -> List[float]:
  return [round(x, 2) for x in os.getloadavg()]


def directory_bytes(path: str, prefix: str = "") -> int:
  return sum(os.path.getsize(os.path.join(path, name)) for name in os.listdir(path)
             if name.startswith(prefix) and os.path.isfile(os.path.join(path, name)))


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
