"""At scale: the portable worker protocol writes the same bytes, many files and many byte
ranges are each read once, and the bounded vocabulary equals a brute-force count."""

import collections
import os
import random
import signal
import socket
import subprocess
import sys
import time

import pytest

from pipeline import inputs as lines_module
from tests.conftest import ROOT, call_cli, preprocess, read_metadata

POOL_START_SECONDS = 120


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _wait_for_port(process, port: int, deadline: float) -> None:
  """Returns once `port` accepts connections; fails if the process exits or time runs out."""
  while time.monotonic() < deadline:
    try:
      with socket.create_connection(("localhost", port), timeout=1):
        return
    except OSError:
      pass
    try:
      process.wait(timeout=0.1)  # waits on the process, not a sleep: returns if it exits
      raise AssertionError(f"the worker pool exited with {process.returncode}")
    except subprocess.TimeoutExpired:
      pass
  raise AssertionError(f"the worker pool did not listen on port {port} within {POOL_START_SECONDS} s")


@pytest.fixture
def worker_pool():
  """Beam's EXTERNAL SDK worker pool on localhost, as Flink, Spark and Dataflow Runner v2
  start Python workers; yields its port, and stops it (with its workers) after."""
  port = _free_port()
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
         # The pool starts workers as `python`, which must be this interpreter, importing this tree.
         "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
         "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
  pool = subprocess.Popen(
      [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={port}"],
      cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
  try:
    _wait_for_port(pool, port, time.monotonic() + POOL_START_SECONDS)
    yield port
  finally:
    os.killpg(pool.pid, signal.SIGTERM)  # its own session: the pool and the workers it started
    try:
      pool.wait(timeout=30)
    except subprocess.TimeoutExpired:
      os.killpg(pool.pid, signal.SIGKILL)
      pool.wait(timeout=30)


def _output_files(output_dir):
  """Every file the contract fixes the bytes of (metadata without its time stamp)."""
  files = {}
  for name in sorted(os.listdir(output_dir)):
    if name.endswith((".tfrecord", ".tfrecord.gz", ".txt")):
      with open(os.path.join(output_dir, name), "rb") as f:
        files[name] = f.read()
  with open(os.path.join(output_dir, "errors", "dead_letter.jsonl"), "rb") as f:
    files["errors/dead_letter.jsonl"] = f.read()
  metadata = read_metadata(output_dir)
  metadata.pop("created")
  files["metadata.json"] = metadata
  return files


@pytest.mark.long
def test_external_worker_pool_writes_the_same_bytes(demo_tag_data, worker_pool, tmp_path):
  """The portable run shuffles records to their shards (--shard_writer auto), the default
  in-process run writes runs (tests/pipeline/test_write.py): the same bytes either way."""
  output_dir = tmp_path / "portable"
  process = preprocess(os.path.join(ROOT, "data", "demo", "tagged.conll"), output_dir, "conll", "tag",
                       "--eval_fraction", "0.1", "--runner", "PortableRunner", "--job_endpoint", "embed",
                       "--environment_type", "EXTERNAL", "--environment_config", f"localhost:{worker_pool}")
  # The workers' Beam counters: bytes went through the shuffle, and no run file was written.
  counters = next(line for line in process.stderr.splitlines() if "Beam counters: " in line)
  assert "shuffled_bytes/train=" in counters and "shuffled_bytes/eval=" in counters, counters
  assert "run_files/" not in counters, counters
  portable, default = _output_files(output_dir), _output_files(demo_tag_data)
  assert sorted(portable) == sorted(default) and any(name.endswith(".tfrecord") for name in portable)
  for name in default:
    assert portable[name] == default[name], name


def _zipf_word(rng):
  return f"w{int(rng.paretovariate(0.7)) % 20000}"


def test_many_files_and_byte_ranges_read_once_and_the_vocabulary_is_exact(tmp_path, monkeypatch):
  """2,000 tiny files and one file of many byte ranges in one run: exact counts, and a
  vocabulary pruned per partition equal to a brute-force count of every token.

  In-process, with small ranges, so that a file of a few MB is read in dozens of them.
  """
  monkeypatch.setattr(lines_module, "RANGE_BYTES", 64 << 10)
  rng = random.Random(0)
  tiny_dir = tmp_path / "tiny"
  tiny_dir.mkdir()
  lines = []  # every line of every input, as read
  for i in range(2000):
    file_lines = [f"{_zipf_word(rng)} t{i}", "", f"{_zipf_word(rng)} {_zipf_word(rng)}"]
    (tiny_dir / f"part-{i:04d}.txt").write_text("".join(line + "\n" for line in file_lines))
    lines += file_lines
  large_lines, size, n = [], 0, 0
  while size < 40.5 * lines_module.RANGE_BYTES:
    line = " ".join([_zipf_word(rng) for _ in range(rng.randint(0, 12))] + [f"u{n}"]) if n % 50 else "  "
    large_lines.append(line)
    size += len(line) + 1
    n += 1
  large = tmp_path / "large.txt"
  large.write_text("".join(line + "\n" for line in large_lines))
  lines += large_lines
  assert len(list(lines_module.split_into_ranges(lines_module.InputFile(str(large), size)))) == 41

  counter = collections.Counter(token.encode() for line in lines for token in line.split())
  min_count = 2
  entries = sorted(((n, token) for token, n in counter.items() if n >= min_count), reverse=True)
  top_k = next(k for k in range(300, len(entries)) if entries[k - 1][0] == entries[k][0])  # a tie at the cut
  assert len(counter) > 10 * top_k
  output_dir = tmp_path / "out"
  call_cli("pipeline.preprocess", "--input", tiny_dir / "*.txt", "--input", large, "--output_dir", output_dir,
           "--format", "text", "--task", "lm", "--eval_fraction", "0", "--max_vocab", top_k + 3,
           "--min_count", min_count, "--vocab_partitions", "3")

  metadata = read_metadata(output_dir)
  blank = [line for line in lines if not line.strip()]
  lengths = collections.Counter(len(line.split()) for line in lines if line.strip())
  assert metadata["counts"]["read"] == len(lines)
  assert metadata["counts"]["filtered"] == {"empty": len(blank)}
  assert metadata["counts"]["written"] == len(lines) - len(blank)
  assert {int(l): n for l, n in metadata["length_histogram"]["train"].items()} == lengths
  assert metadata["splits"]["train"]["tokens"] == sum(len(line.split()) for line in lines)
  with open(output_dir / "vocab.txt", "rb") as f:
    assert f.read().split(b"\n")[3:-1] == [token for _, token in entries[:top_k]]  # after <pad>, <unk>, </s>
