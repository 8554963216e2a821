"""Prism, Beam's portable runner in Go, as `make setup` builds it: LOOPBACK workers, PROCESS
workers started by boot, and a standalone job server through the PortableRunner, each
writing the default runner's bytes; faults on the real runner; no process left behind.

Each test runs the three shared corpora (text/lm, conll/tag with wordpiece, jsonl/classify
with dead letters and gzip) on one way of running Prism, and compares every output file
with the default runner's (the session fixtures). The faults are SIGKILLs of a real
worker, boot or job server process while the job runs in this process; the rerun with
--overwrite that follows is one of the byte-for-byte comparisons.
"""

import contextlib
import json
import os
import pathlib
import shutil
import signal
import socket
import threading
import time
import uuid

import pytest

import contract
from pipeline import prism as prism_lib
from pipeline import runners
from tests.conftest import preprocess, read_metadata
from tests.pipeline.conftest import (CLASSIFY_CORPUS, LM_CORPUS, LM_OPTIONS, WORDPIECE_CORPUS, WORDPIECE_OPTIONS)

FAULT_SECONDS = 120  # a job must end this soon after a fault
MARK = "RNN_TEST_MARK"  # set while a test runs: every process its jobs start inherits it


@pytest.fixture
def mark():
  """Marks this test's processes (its jobs' Prism, boot, workers and servers inherit this
  process's environment), so that leftovers are found among other tests' processes."""
  value = uuid.uuid4().hex
  os.environ[MARK] = value
  yield value
  del os.environ[MARK]


def _environ(pid):
  try:
    with open(f"/proc/{pid}/environ", "rb") as f:
      return dict(entry.split(b"=", 1) for entry in f.read().split(b"\0") if b"=" in entry)
  except OSError:
    return {}


def _cmdline(pid):
  try:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
      return f.read().split(b"\0")
  except OSError:
    return []


def marked_processes(mark_value):
  """{pid: command line} of live processes started for this test (zombies have no environment)."""
  found = {}
  for name in os.listdir("/proc"):
    if name.isdigit() and int(name) != os.getpid():
      environ = _environ(name)
      if environ.get(MARK.encode()) == mark_value.encode() and any(k.startswith(b"RNN_BEAM_") for k in environ):
        found[int(name)] = b" ".join(_cmdline(name)).decode(errors="replace")
  return found


def find_process(mark_value, kind):
  """The pid of a live `kind` process of this test (boot, worker, prism), or None."""
  for pid, command in marked_processes(mark_value).items():
    if {"boot": command.split(" ")[0].endswith("/boot"), "worker": "sdk_worker_main" in command,
        "prism": "/prism " in command + " "}[kind]:
      return pid
  return None


def killed_during(job, find, condition=lambda: True):
  """Runs `job()` (a CLI in this process) while another thread SIGKILLs the process that
  `find()` names as soon as `condition()` holds. Returns (the job's result, seconds from
  the kill to the job's end, or None if nothing was killed).

  The thread waits on the job's end between looks, never a fixed time. A job still
  running FAULT_SECONDS after the kill gets its processes stopped, so that a hang fails
  the test instead of hanging the run.
  """
  done, killed = threading.Event(), []

  def kill():
    while not done.wait(0.01):
      pid = find()
      if pid and condition():
        os.kill(pid, signal.SIGKILL)
        killed.append(time.monotonic())
        break
    if killed and not done.wait(FAULT_SECONDS + 30):
      for pid in marked_processes(os.environ[MARK]):
        with contextlib.suppress(ProcessLookupError):
          os.kill(pid, signal.SIGKILL)

  thread = threading.Thread(target=kill, daemon=True)
  thread.start()
  try:
    result = job()
  finally:
    done.set()
    thread.join()
  return result, (time.monotonic() - killed[0]) if killed else None


def comparable_files(output_dir):
  """Every file whose bytes the contract fixes: shards, vocabularies, dead letters, the
  transform_fn's assets, transformed_metadata; metadata.json without its time."""
  output_dir = pathlib.Path(output_dir)
  files = {}
  for path in sorted(output_dir.rglob("*")):
    name = str(path.relative_to(output_dir))
    if path.is_file() and name not in (contract.METADATA_FILE, contract.COMPLETED_FILE) and (
        not name.startswith(contract.TRANSFORM_FN_DIR) or name.startswith(os.path.join(contract.TRANSFORM_FN_DIR, "assets"))):
      files[name] = path.read_bytes()
  metadata = read_metadata(output_dir)
  metadata.pop("created")
  files[contract.METADATA_FILE] = metadata
  return files


def assert_same_output(output_dir, default_dir):
  got, want = comparable_files(output_dir), comparable_files(default_dir)
  assert sorted(got) == sorted(want)
  assert any(name.endswith(".tfrecord") or name.endswith(".tfrecord.gz") for name in want)
  for name in want:
    assert got[name] == want[name], name


def corpora(lm_run, wordpiece_tag_run, classify_run):
  """(name, inputs, format, task, options, the default runner's output) of the shared runs."""
  lm, wordpiece, classify = (pathlib.Path(run).parent for run in (lm_run, wordpiece_tag_run, classify_run))
  return [
      ("lm", [lm / LM_CORPUS], "text", "lm", LM_OPTIONS, lm_run),
      ("wordpiece_tag", [wordpiece / WORDPIECE_CORPUS], "conll", "tag", WORDPIECE_OPTIONS, wordpiece_tag_run),
      ("classify", [classify / CLASSIFY_CORPUS, classify / "zero.jsonl"], "jsonl", "classify",
       ("--compression", "gzip", "--eval_fraction", "0.3", "--max_error_fraction", "0.9"), classify_run),
  ]


def run_corpus(corpus, output_dir, *runner_flags, check=True):
  _, inputs, file_format, task, options, _ = corpus
  return preprocess([str(path) for path in inputs], output_dir, file_format, task, *options, *runner_flags,
                    check=check)


def counters(process):
  return next(line for line in process.stderr.splitlines() if "Beam counters: " in line)


def error_line(process):
  return process.stderr.strip().splitlines()[-1]


def assert_failed_cleanly(process, seconds, output_dir, mark_value, message):
  """A job that failed after a fault: soon, with one error line, no COMPLETED, nothing left running."""
  assert seconds is not None, "nothing was killed: the job ended first"
  assert seconds < FAULT_SECONDS, f"the job ended {seconds:.0f} s after the fault"
  assert process.returncode == 1, process.stderr[-3000:]
  assert error_line(process).startswith("error: the job failed: ") and message in error_line(process), process.stderr[-3000:]
  assert "Traceback" not in process.stderr
  assert not (pathlib.Path(output_dir) / contract.COMPLETED_FILE).exists()
  assert marked_processes(mark_value) == {}


def test_setup_built_prism_and_boot_at_the_pinned_beam_version():
  """`make setup` built both binaries for the Beam that requirements.txt pins (and the venv has)."""
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  with open(os.path.join(prism_lib.ROOT, "requirements.txt"), encoding="utf-8") as f:
    pinned = next(line.split("==")[1].split()[0] for line in f if line.startswith("apache-beam"))
  assert pinned == metadata.version("apache-beam")
  with open(prism_lib.VERSION_FILE, encoding="utf-8") as f:
    assert f.read().strip() == pinned
  for name in ("prism", "boot"):
    assert runners.binary(name) == os.path.join(prism_lib.BEAM_DIR, name)


def test_the_default_runner_takes_a_worker_process_per_core_for_large_inputs_unless_told():
  from apache_beam.options.pipeline_options import DirectOptions  # pylint: disable=g-import-not-at-top
  from pipeline import preprocess  # pylint: disable=g-import-not-at-top
  large, cores = runners.LOCAL_WORKERS_MIN_BYTES, min(os.cpu_count(), runners.MAX_LOCAL_WORKERS)
  for args, input_bytes, workers in (([], large, cores), ([], large - 1, 1), (["--direct_num_workers", "1"], large, 0),
                                     (["--runner=DirectRunner"], large, 0), (["--runner", "PrismRunner"], large, 0)):
    options = preprocess.pipeline_options(args)
    assert runners.local_workers(options, args, input_bytes) == workers
    direct = options.view_as(DirectOptions)
    assert (direct.direct_num_workers, direct.direct_running_mode) == (
        (workers, "multi_processing") if workers > 1 else (1, "in_memory"))


def test_one_flag_is_enough_and_the_users_own_flags_win(tmp_path):
  from apache_beam.options.pipeline_options import PipelineOptions, PortableOptions, PrismRunnerOptions  # pylint: disable=g-import-not-at-top

  def completed(*args):
    options = PipelineOptions(list(args))
    runners.complete(options)
    return options.view_as(PortableOptions), options.view_as(PrismRunnerOptions)

  portable, prism = completed("--runner", "PrismRunner")
  assert prism.prism_location == runners.binary("prism") and portable.environment_type is None  # Beam's LOOPBACK
  portable, _ = completed("--runner", "PrismRunner", "--environment_type", "PROCESS")
  config = json.loads(portable.environment_config)
  assert config["command"] == runners.BOOT_WORKER and os.access(config["command"], os.X_OK)
  assert config["env"]["BEAM_BOOT"] == runners.binary("boot")
  assert config["env"]["PYTHONPATH"].split(os.pathsep)[0] == prism_lib.ROOT
  # The user's own flags win.
  portable, prism = completed("--runner", "PrismRunner", "--prism_location", "/opt/prism", "--environment_type",
                              "PROCESS", "--environment_config", '{"command": "/opt/boot"}')
  assert prism.prism_location == "/opt/prism" and portable.environment_config == '{"command": "/opt/boot"}'
  _, prism = completed("--runner", "PrismRunner", "--job_endpoint", "localhost:1")
  assert prism.prism_location is None  # a job server of the user's: nothing to start
  portable, _ = completed("--runner", "DirectRunner")
  assert portable.environment_config is None

  # A PortableRunner job for a job server on this machine that is not there: a usage error.
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]  # free once closed
  corpus = tmp_path / "c.txt"
  corpus.write_text("a b\n", encoding="utf-8")
  process = preprocess(corpus, tmp_path / "out", "text", "lm", "--runner", "PortableRunner", "--job_endpoint",
                       f"localhost:{port}", check=False)
  assert process.returncode == 2
  assert error_line(process).endswith(f"no job server listens at localhost:{port}: start one with `make prism-up`")


@pytest.mark.long
def test_prism_with_loopback_workers_writes_the_same_bytes(lm_run, wordpiece_tag_run, classify_run, tmp_path, mark):
  """`--runner PrismRunner` and nothing else: Prism from build/beam, the workers in this
  process; the shard writer of local runners (run files). No Prism is left running."""
  for corpus in corpora(lm_run, wordpiece_tag_run, classify_run):
    output_dir = tmp_path / corpus[0]
    process = run_corpus(corpus, output_dir, "--runner", "PrismRunner")
    assert "run_files/train=" in counters(process) and "shuffled_bytes/" not in counters(process)
    assert_same_output(output_dir, corpus[-1])
    assert marked_processes(mark) == {}
  jobs = runners.job_dir("")  # a job that succeeded leaves no folder (its token holds its driver's pid)
  assert not os.path.isdir(jobs) or not [name for name in os.listdir(jobs) if f"-{os.getpid()}-" in name]


@pytest.mark.long
def test_prism_with_process_workers_survives_killed_workers_and_writes_the_same_bytes(
    lm_run, wordpiece_tag_run, classify_run, tmp_path, mark):
  """`--environment_type PROCESS` and nothing else: workers started by boot (through
  pipeline/boot_worker.sh), with this venv's Python and this code.

  A worker SIGKILLed mid-stage (once the first run files are written) and a boot SIGKILLed
  before its worker connects (where Prism alone would wait forever) each fail the job
  within FAULT_SECONDS, with one error line, no COMPLETED and no process left; the rerun
  with --overwrite writes the default runner's bytes.
  """
  lm, wordpiece, classify = corpora(lm_run, wordpiece_tag_run, classify_run)
  flags = ("--runner", "PrismRunner", "--environment_type", "PROCESS")
  for corpus, kind, condition, message in [
      (lm, "worker", lambda out: (out / ".tmp" / "runs").exists(), "an SDK worker process"),
      (wordpiece, "boot", lambda out: True, "an SDK worker's boot process exited"),
  ]:
    output_dir = tmp_path / corpus[0]
    failed, seconds = killed_during(lambda: run_corpus(corpus, output_dir, *flags, check=False),
                                    lambda: find_process(mark, kind), lambda: condition(output_dir))
    assert_failed_cleanly(failed, seconds, output_dir, mark, message)
    run_corpus(corpus, output_dir, *flags, "--overwrite")
    assert_same_output(output_dir, corpus[-1])
  output_dir = tmp_path / classify[0]
  run_corpus(classify, output_dir, *flags)
  assert_same_output(output_dir, classify[-1])
  assert marked_processes(mark) == {}


@pytest.fixture
def job_server(tmp_path, mark):  # pylint: disable=unused-argument  (its processes carry the mark)
  """`make prism-up`'s server (`python -m pipeline.prism up`) on a free port, with its pid
  and log in a folder of this test; yields (its endpoint, a function that starts it again);
  `down` after."""
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  run_dir = str(tmp_path / "server")

  def up():
    assert prism_lib.main(["up", "--port", str(port), "--run_dir", run_dir]) == 0
    return prism_lib.running_server(os.path.abspath(run_dir))

  up()
  yield f"localhost:{port}", up
  assert prism_lib.main(["down", "--run_dir", run_dir]) == 0


@pytest.mark.long
def test_standalone_job_server_shuffles_to_the_same_bytes_and_its_loss_fails_the_job(
    lm_run, wordpiece_tag_run, classify_run, job_server, tmp_path, mark, capsys):
  """`--runner PortableRunner --job_endpoint localhost:PORT` on `make prism-up`'s server:
  PROCESS workers by default, records through the runner's shuffle (`--shard_writer auto`
  on a portable runner). The server SIGKILLed mid-job fails the job at once; `up` again and
  every corpus writes the default runner's bytes; `down` leaves no process."""
  endpoint, up = job_server
  server_pid = prism_lib.running_server(os.path.abspath(tmp_path / "server"))
  lm, wordpiece, classify = corpora(lm_run, wordpiece_tag_run, classify_run)
  flags = ("--runner", "PortableRunner", "--job_endpoint", endpoint)
  output_dir = tmp_path / lm[0]
  failed, seconds = killed_during(lambda: run_corpus(lm, output_dir, *flags, check=False),
                                  lambda: server_pid, lambda: find_process(mark, "worker"))
  assert_failed_cleanly(failed, seconds, output_dir, mark, f"the job server at {endpoint} went away")

  server_pid = up()
  for corpus in (lm, wordpiece, classify):
    output_dir = tmp_path / corpus[0]
    process = run_corpus(corpus, output_dir, *flags, "--overwrite")
    assert "shuffled_bytes/train=" in counters(process) and "run_files/" not in counters(process)
    assert_same_output(output_dir, corpus[-1])
  assert list(marked_processes(mark)) == [server_pid]  # the jobs' workers are gone
  capsys.readouterr()
  assert prism_lib.main(["down", "--run_dir", str(tmp_path / "server")]) == 0
  assert capsys.readouterr().out.startswith("Prism job server stopped")
  assert marked_processes(mark) == {}


def _record_pid(element, folder):
  """Leaves a file named by this worker process's pid (Prism reports no metrics from the
  workers of a second environment)."""
  with open(os.path.join(folder, f"{os.getpid()}-{element}"), "w", encoding="utf-8"):
    pass
  return element


@pytest.mark.long
def test_prism_runs_one_worker_process_per_environment(tmp_path, mark, monkeypatch):
  """What makes Prism run bundles in two worker processes: two environments.

  Prism (Beam 2.77) starts one SDK worker per environment of the pipeline
  (internal/execute.go), ignores --sdk_worker_parallelism, and provisions no sibling
  worker ids (boot starts one Python process per id). So a job runs one worker process
  per environment, and transforms in two more environments (Beam makes one per set of
  resource hints) run in two more processes, each its own bundles. The pipeline has one
  environment: one worker process (BENCHMARKS.md measures what it reaches).
  """
  import apache_beam as beam  # pylint: disable=g-import-not-at-top
  from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv(runners.KEEP_LOGS_VARIABLE, "1")  # to count the workers' folders
  options = PipelineOptions(["--runner", "PrismRunner", "--environment_type", "PROCESS",
                             "--sdk_worker_parallelism", "2"])
  runners.complete(options)
  pipeline = beam.Pipeline(options=options)
  folders = {name: tmp_path / name for name in ("default", "hinted0", "hinted1")}
  for folder in folders.values():
    folder.mkdir()
  numbers = pipeline | beam.Create(range(16)) | "Default" >> beam.Map(_record_pid, str(folders["default"]))
  for i, part in enumerate(numbers | beam.Partition(lambda x, n: x % n, 2)):
    _ = part | f"Hinted{i}" >> beam.Map(_record_pid, str(folders[f"hinted{i}"])).with_resource_hints(
        min_ram=f"{i + 1}GB")
  runners.run(pipeline)
  pids = {}
  for name, folder in folders.items():
    files = os.listdir(folder)
    assert len(files) == (16 if name == "default" else 8)
    pids[name] = {file.split("-")[0] for file in files}
  assert all(len(found) == 1 for found in pids.values()), pids  # one process per environment ...
  assert len(set.union(*pids.values())) == 3 and str(os.getpid()) not in set.union(*pids.values())  # ... each its own
  workers = os.path.join(runners.job_dir(runners._token_of(options)), "workers")
  assert len(os.listdir(workers)) == 3  # one boot per environment, --sdk_worker_parallelism 2 or not
  assert marked_processes(mark) == {}
  shutil.rmtree(os.path.dirname(workers))


def readme_commands():
  """The `pipeline.preprocess` commands in README.md's "Running at scale" section, each
  as its arguments, and the options of its `# Or: --flag …` alternatives."""
  import re  # pylint: disable=g-import-not-at-top
  import shlex  # pylint: disable=g-import-not-at-top
  with open(os.path.join(prism_lib.ROOT, "README.md"), encoding="utf-8") as f:
    readme = f.read()
  section = readme[readme.index("## Running at scale"):readme.index("### How records reach their shards")]
  commands = []
  for block in re.findall(r"```bash\n(.*?)```", section, re.S):
    for line in block.replace("\\\n", " ").splitlines():
      if line.startswith("# Or: --"):  # the rest of the command as above
        commands.append(["--input", "x", "--output_dir", "y", "--format", "text", "--task", "lm",
                         *shlex.split(line[len("# Or: "):])])
      elif not line.startswith("#") and " -m pipeline.preprocess " in line:
        words = shlex.split(line)
        commands.append(words[words.index("pipeline.preprocess") + 1:])
  return section, commands


def test_the_readmes_runner_commands_are_beam_options_of_this_beam():
  """Every option of the documented Prism, Flink, Spark and Dataflow commands is one this
  pipeline or Beam's PipelineOptions knows, with a value Beam accepts; the job-server jars
  named are this Beam's, for Flink versions it supports. A renamed flag fails here."""
  import re  # pylint: disable=g-import-not-at-top
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  from apache_beam.options.pipeline_options import FlinkRunnerOptions, PipelineOptions, StandardOptions  # pylint: disable=g-import-not-at-top
  from pipeline import preprocess as preprocess_lib  # pylint: disable=g-import-not-at-top
  section, commands = readme_commands()
  parser = preprocess_lib.build_parser()
  runners_named = set()
  for argv in commands:
    _, pipeline_args = parser.parse_known_args(argv)
    preprocess_lib.check_pipeline_args(pipeline_args, parser)  # an unknown option raises UsageError
    options = PipelineOptions(pipeline_args).get_all_options()  # a bad choice exits (SystemExit)
    runners_named.add(options["runner"])
    if options["environment_config"] and options["environment_config"].startswith("{"):
      json.loads(options["environment_config"])
  assert {"PrismRunner", "PortableRunner", "FlinkRunner", "SparkRunner", "DataflowRunner"} <= runners_named
  assert runners_named <= set(StandardOptions.KNOWN_RUNNER_NAMES)
  version = metadata.version("apache-beam")
  jars = re.findall(r"beam-runners-(flink-[\d.]+|spark-3)-job-server[:/-]+([\d.]+)", section)
  assert {name for name, _ in jars} >= {"flink-1.19", "flink-1.20", "spark-3"}
  for name, jar_version in jars:
    assert jar_version.rstrip(".") == version, name
    if name.startswith("flink-"):
      assert name[len("flink-"):] in FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS
