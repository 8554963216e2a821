"""Shared fixtures: real CLI runs on tiny corpora written by the tests, no mocks.

The CPU is split into 2 logical devices before TensorFlow initialises, so trainer tests
can build MirroredStrategy with 1 or 2 replicas in this process.
"""

import contextlib
import io
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # pylint: disable=g-import-not-at-top
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_CPU_DEVICES = 2

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration() for _ in range(TEST_CPU_DEVICES)])
# `make test` runs a pytest-xdist process per core and one more: one thread each for
# TensorFlow's own ops keeps them from spinning against each other (the tensors are tiny).
tf.config.threading.set_inter_op_parallelism_threads(1)
tf.config.threading.set_intra_op_parallelism_threads(1)


def pytest_configure(config):
  config.addinivalue_line("markers", "long: half a minute or more, mostly spent in processes of its own or "
                                     "waiting for the demo tagger; dealt out before the other tests")


def pytest_collection_modifyitems(items):
  """The `long` tests first, in the order they are collected, but one that needs the demo
  tagger first of all: its training is the longest chain, so it starts at once, and the
  other tests that wait for it come after the long ones that do not.

  pytest-xdist deals tests out to its workers in this order (`make test`: one at a time), so
  the long ones start at once rather than last, and the others fill in around them.
  """
  long = [item for item in items if item.get_closest_marker("long")]
  first = [item for item in long if "demo_tagger" in item.fixturenames][:1]
  items[:] = first + [item for item in long if item not in first] + [item for item in items if item not in long]


_CLI_LOGGERS = ("tensorflow", "absl", "apache_beam", "matplotlib")


def call_cli(module, *args, check=True, stdin=None):
  """Runs a CLI's `run(argv)` in this process: a CompletedProcess like `python -m module args`'s.

  The same code as `python -m module args` from argument parsing to exit status, without a
  new interpreter importing TensorFlow and Beam again: stdout, stderr and the log lines
  (at INFO, as the CLIs log) are captured, `stdin` (text) is what the CLI reads from
  stdin, SystemExit becomes the return code, and the environment, logging, SIGTERM handler
  and garbage collector are restored afterwards. What only a process shows (start-up
  output, imports, a SIGKILL) needs a process of its own (tests/cli_testing.py, or Popen).
  """
  import gc  # pylint: disable=g-import-not-at-top
  import importlib  # pylint: disable=g-import-not-at-top
  import logging  # pylint: disable=g-import-not-at-top
  import signal  # pylint: disable=g-import-not-at-top
  argv = [str(arg) for arg in args]
  cli = importlib.import_module(module)
  stdout, stderr = io.StringIO(), io.StringIO()
  handler = logging.StreamHandler(stderr)
  handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
  root = logging.getLogger()
  levels = {name: logging.getLogger(name).level for name in ("",) + _CLI_LOGGERS}
  environment, sigterm, gc_threshold = dict(os.environ), signal.getsignal(signal.SIGTERM), gc.get_threshold()
  root.addHandler(handler)
  root.setLevel(logging.INFO)
  for name in _CLI_LOGGERS:
    logging.getLogger(name).setLevel(logging.WARNING)
  try:
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), _stdin_from(stdin):
      try:
        code = cli.run(argv)
      except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
  finally:
    root.removeHandler(handler)
    for name, level in levels.items():
      logging.getLogger(name).setLevel(level)
    os.environ.clear()
    os.environ.update(environment)  # importing TFT sets TF_USE_LEGACY_KERAS
    signal.signal(signal.SIGTERM, sigterm)
    gc.unfreeze()  # pipeline.preprocess tunes the garbage collector for a whole job
    gc.set_threshold(*gc_threshold)
  process = subprocess.CompletedProcess([module, *argv], code or 0, stdout.getvalue(), stderr.getvalue())
  if check and process.returncode != 0:
    raise AssertionError(f"{module} exited {process.returncode}:\n{process.stderr[-4000:]}")
  return process


@contextlib.contextmanager
def _stdin_from(text):
  saved, sys.stdin = sys.stdin, io.StringIO(text or "")
  try:
    yield
  finally:
    sys.stdin = saved


def kill_when(process, condition):
  """SIGKILLs a running process as soon as `condition()` holds (or once it has exited)."""
  import signal  # pylint: disable=g-import-not-at-top
  while not condition():
    try:
      process.wait(timeout=0.01)  # waits on the process, not a sleep: returns when it exits
      break
    except subprocess.TimeoutExpired:
      pass
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert process.returncode == -signal.SIGKILL, "the process ended before it could be killed"


def preprocess(inputs, output_dir, file_format, task, *extra, check=True):
  """pipeline.preprocess, run in this process (`call_cli`)."""
  args = []
  for pattern in ([inputs] if isinstance(inputs, (str, os.PathLike)) else inputs):
    args += ["--input", pattern]
  return call_cli("pipeline.preprocess", *args, "--output_dir", output_dir, "--format", file_format,
                  "--task", task, *extra, check=check)


def read_metadata(output_dir):
  with open(os.path.join(output_dir, "metadata.json"), encoding="utf-8") as f:
    return json.load(f)


def read_records(output_dir, split, task="tag"):
  """Parses every record of a split with TensorFlow: a list of dicts of numpy values (`chars`,
  where the records hold it: a list of lists, one per token)."""
  import contract  # pylint: disable=g-import-not-at-top
  metadata = read_metadata(output_dir)
  context_spec, sequence_spec = contract.parsing_spec(metadata["task"], chars="chars" in metadata)
  records = []
  for shard in metadata["splits"][split]["shards"]:
    path = os.path.join(output_dir, shard["file"])
    for serialized in tf.data.TFRecordDataset(path, compression_type=contract.compression_type(metadata)):
      context, sequences = tf.io.parse_single_sequence_example(serialized, context_spec, sequence_spec)
      records.append({k: v.to_list() if isinstance(v, tf.RaggedTensor) else v.numpy()
                      for k, v in {**context, **sequences}.items()})
  return records


def truncated_chars(token, max_token_chars):
  """A token's characters as --max_token_chars keeps them (the first max - max // 2 and the
  last max // 2), written independently of the pipeline's graph."""
  if len(token) <= max_token_chars:
    return token
  return token[:max_token_chars - max_token_chars // 2] + token[len(token) - max_token_chars // 2:]


def write_conll(path, sentences):
  """sentences: lists of (token, label)."""
  with open(path, "w", encoding="utf-8") as f:
    for sentence in sentences:
      f.write("".join(f"{token}\t{label}\n" for token, label in sentence) + "\n")


TAGGED = [
    [("The", "DET"), ("cat", "NOUN"), ("sleeps", "VERB"), (".", "PUNCT")],
    [("A", "DET"), ("dog", "NOUN"), ("runs", "VERB")],
    [("Alice", "PROPN"), ("sees", "VERB"), ("the", "DET"), ("dog", "NOUN"), ("!", "PUNCT")],
    [("Bob", "PROPN"), ("runs", "VERB")],
    [("The", "DET"), ("old", "ADJ"), ("cat", "NOUN"), ("sees", "VERB"), ("Bob", "PROPN")],
    [("café", "NOUN"), ("naïve", "ADJ"), ("😀", "SYM"), ("東京", "PROPN"), ("שלום", "INTJ")],
]


def built_once(tmp_path_factory, name, build):
  """A directory that `build(path)` fills once per test run, shared by pytest-xdist's workers.

  The first worker to ask builds it while holding a lock; the others wait, then reuse it.
  """
  import fcntl  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    root = root.parent  # this run's directory, above each worker's own
  path, done = root / name, root / f"{name}.built"
  with open(root / f"{name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not done.exists():
      shutil.rmtree(path, ignore_errors=True)
      build(path)
      done.write_text("")
  return path


@pytest.fixture(scope="session")
def demo_tag_data(tmp_path_factory):
  """The pipeline's output on the bundled demo corpus (tag task), built once per run."""
  def build(output_dir):
    preprocess(os.path.join(ROOT, "data", "demo", "tagged.conll"), output_dir, "conll", "tag",
               "--eval_fraction", "0.1")
  return str(built_once(tmp_path_factory, "demo_tag_data", build))


# The session's demo tagger: 2 replicas, 100 steps, evaluated and checkpointed every 25
# (the last 3 checkpoints kept: 50, 75, 100), dropout and word dropout on (so their RNG states
# matter to a resume); the demo data has chars, so the default char encoder is in it.
DEMO_TAGGER_FLAGS = ("--embedding_dim", "16", "--hidden", "24", "--log_every", "10", "--cpu_replicas", "2",
                     "--train_steps", "100", "--eval_every", "25", "--checkpoint_every", "25", "--bidirectional",
                     "--warmup_steps", "20", "--dropout", "0.1", "--word_dropout", "0.25", "--char_features", "16")


@pytest.fixture(scope="session")
def demo_tagger(demo_tag_data, tmp_path_factory):
  """A small bidirectional tagger trained once per run on the demo data (DEMO_TAGGER_FLAGS),
  exporting the best step: (model_dir, process). Tests must not change it: copy it to
  resume or retrain.
  """
  def build(path):
    path.mkdir(parents=True)
    process = call_cli("trainer.task", "--data_dir", demo_tag_data, "--model_dir", path / "model",
                       *DEMO_TAGGER_FLAGS)
    (path / "process.json").write_text(json.dumps([process.args, process.stdout, process.stderr]))
  path = built_once(tmp_path_factory, "demo_tagger", build)
  args, stdout, stderr = json.loads((path / "process.json").read_text())
  return path / "model", subprocess.CompletedProcess(args, 0, stdout, stderr)
