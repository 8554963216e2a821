r"""Beam's Prism runner and its SDK workers, each from one flag, and no process left behind.

    --runner PrismRunner           Prism from build/beam/ (`make setup` builds it at the Beam version
                                   of requirements.txt), started for the job on a free port and
                                   stopped after it; LOOPBACK workers (in this process) by default
    --environment_type PROCESS     SDK workers started through Beam's boot program
                                   (pipeline/boot_worker.sh), running this venv's Python on this code
    --runner PortableRunner --job_endpoint localhost:8073
                                   the standalone Prism job server of `make prism-up`; PROCESS
                                   workers unless --environment_type says otherwise

A user's own --prism_location, --job_endpoint and --environment_config win. `run` stops
every process a job started when it ends, whether it succeeded or failed (pipeline/prism.py
finds them by their environment). Logs go under build/beam/run/jobs/<token>/: the job's
`prism.log` and its workers' folders (removed when the job succeeds, unless
`RNN_KEEP_JOB_LOGS=1`).
"""

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional

from pipeline.prism import (JOB_VARIABLE, ROOT, RUN_DIR, Unavailable, binary, kill_group, server_files,
                            started_prism, stop_processes)

BOOT_WORKER = os.path.join(ROOT, "pipeline", "boot_worker.sh")
KEEP_LOGS_VARIABLE = "RNN_KEEP_JOB_LOGS"  # set (to 1): a job that succeeds keeps its folder too
# Beam's --job_server_timeout (300 s) is also the deadline of the stream that follows the
# job's state: a longer job would fail ("Deadline Exceeded"). For a job server on this
# machine, which `run` checks just before the job, wait as long as the job takes.
LOCAL_JOB_SERVER_SECONDS = 10 ** 8


# The default local runner's worker processes (`local_workers`): below this much input one
# in-process worker finishes first, as each worker process imports TensorFlow (about 5 s
# and 1 GB); from it on, the work dominates. BENCHMARKS.md ("Runners").
LOCAL_WORKERS_MIN_BYTES = 64 * 2 ** 20
MAX_LOCAL_WORKERS = 4  # each holds TensorFlow, Beam and TFT: about 1 GB of memory apiece


def local_workers(options, pipeline_args, input_bytes: int) -> int:
  """Sets the default runner's worker processes, where `pipeline_args` (the user's Beam
  flags) choose no runner and no workers: one per core (at most MAX_LOCAL_WORKERS) in
  multi_processing mode for inputs of LOCAL_WORKERS_MIN_BYTES or more, else one in-process
  worker. Returns the number set (0: the user's choice stands)."""
  from apache_beam.options.pipeline_options import DirectOptions  # pylint: disable=g-import-not-at-top
  chosen = ("--runner", "--direct_num_workers", "--direct_running_mode")
  if any(arg.split("=", 1)[0] in chosen for arg in pipeline_args):
    return 0
  workers = min(os.cpu_count() or 1, MAX_LOCAL_WORKERS) if input_bytes >= LOCAL_WORKERS_MIN_BYTES else 1
  if workers > 1:
    direct = options.view_as(DirectOptions)
    direct.direct_num_workers, direct.direct_running_mode = workers, "multi_processing"
  return workers


def _runner_class(options) -> type:
  from apache_beam.options.pipeline_options import StandardOptions  # pylint: disable=g-import-not-at-top
  from apache_beam.runners.runner import create_runner  # pylint: disable=g-import-not-at-top
  return type(create_runner(options.view_as(StandardOptions).runner))


def _is_this_machine(endpoint: Optional[str]) -> bool:
  host = (endpoint or "").rsplit(":", 1)[0].strip("[]")
  return host in ("localhost", "127.0.0.1", "::1")


def complete(options) -> None:
  """Fills in, where the user gave none, what the runner asked for needs on this machine.

  PrismRunner: `--prism_location` (build/beam/prism). PortableRunner with a job endpoint on
  this machine: `--environment_type PROCESS`. PROCESS: a boot command for this venv and
  code (`worker_environment`).

  Raises:
    Unavailable: a binary that is needed was not built (`make setup`).
  """
  from apache_beam.options.pipeline_options import DebugOptions, PortableOptions, PrismRunnerOptions  # pylint: disable=g-import-not-at-top
  from apache_beam.runners.portability.portable_runner import PortableRunner  # pylint: disable=g-import-not-at-top
  from apache_beam.runners.portability.prism_runner import PrismRunner  # pylint: disable=g-import-not-at-top
  runner = _runner_class(options)
  portable = options.view_as(PortableOptions)
  prism = options.view_as(PrismRunnerOptions)
  own_prism = issubclass(runner, PrismRunner) and not portable.job_endpoint
  if own_prism and not prism.prism_location:
    prism.prism_location = binary("prism")
  local_server = runner is PortableRunner and _is_this_machine(portable.job_endpoint)
  if local_server:
    _check_listening(portable.job_endpoint)
    if not portable.environment_type:
      portable.environment_type = "PROCESS"
  if (own_prism or local_server) and "job_server_timeout" not in options.get_all_options(drop_default=True):
    portable.job_server_timeout = LOCAL_JOB_SERVER_SECONDS
  if own_prism or local_server:
    # Staging would run `pip freeze` in this process, for a log line of the job server's
    # workers, which run this very venv.
    options.view_as(DebugOptions).add_experiment("disable_logging_submission_environment")
  process_command = any(option.startswith("process_command=") for option in portable.environment_options or ())
  if (portable.environment_type or "").upper() == "PROCESS" and not portable.environment_config and not process_command:
    portable.environment_config = json.dumps({"command": BOOT_WORKER, "env": worker_environment(new_token())})


def absolute_paths(config):
  """`config` with its local input patterns and output directory made absolute.

  An SDK worker may run in another working directory than the driver (boot's PROCESS
  workers do), so a relative path would name another file there, or none.
  """
  import dataclasses  # pylint: disable=g-import-not-at-top
  absolute = lambda path: path if "://" in path else os.path.abspath(path)
  return dataclasses.replace(config, inputs=tuple(map(absolute, config.inputs)),
                             eval_inputs=tuple(map(absolute, config.eval_inputs)),
                             test_inputs=tuple(map(absolute, config.test_inputs)),
                             output_dir=absolute(config.output_dir),
                             vocab_from=config.vocab_from and absolute(config.vocab_from))


def _check_listening(endpoint: str) -> None:
  import socket  # pylint: disable=g-import-not-at-top
  host, port = endpoint.rsplit(":", 1)
  try:
    socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
  except (OSError, ValueError):
    raise Unavailable(f"no job server listens at {endpoint}: start one with `make prism-up`") from None


def new_token() -> str:
  """A job's name for its processes and its folder under RUN_DIR/jobs."""
  return time.strftime("%Y%m%d-%H%M%S-") + f"{os.getpid()}-{secrets.token_hex(3)}"


def job_dir(token: str) -> str:
  return os.path.join(RUN_DIR, "jobs", token)


def worker_environment(token: str) -> Dict[str, str]:
  """What boot_worker.sh needs to start a worker of job `token` with this venv and code."""
  python_path = os.environ.get("PYTHONPATH")
  return {
      "BEAM_BOOT": binary("boot"),
      "BEAM_WORKER_DIR": os.path.join(job_dir(token), "workers"),
      "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
      "PYTHONPATH": ROOT + (os.pathsep + python_path if python_path else ""),
      JOB_VARIABLE: token,
  }


def _token_of(options) -> Optional[str]:
  """The token `complete` put into the PROCESS environment's config, if it did."""
  from apache_beam.options.pipeline_options import PortableOptions  # pylint: disable=g-import-not-at-top
  try:
    return json.loads(options.view_as(PortableOptions).environment_config or "")["env"][JOB_VARIABLE]
  except (ValueError, TypeError, KeyError):
    return None


class JobFailed(Exception):
  """A job that failed outside our code: its job server or an SDK worker process went away."""


def run(pipeline):
  """Runs `pipeline` to the end and returns its result, with its metrics fetched.

  Starts the job's own Prism first if it needs one, and stops every process of the job
  after (`stop_processes`), however the job ends. A job whose worker process died where
  Prism would wait for it forever (a boot that exits before its worker connects) is
  cancelled `GRACE_SECONDS` after Prism logs it.

  Raises:
    JobFailed: the job server or a worker process went away (the job's Prism log says which).
    Exception: what `wait_until_finish` raises for any other failure (an error in a DoFn).
  """
  from apache_beam.options.pipeline_options import PortableOptions, PrismRunnerOptions  # pylint: disable=g-import-not-at-top
  from apache_beam.runners.portability.prism_runner import PrismRunner  # pylint: disable=g-import-not-at-top
  options = pipeline.options
  portable = options.view_as(PortableOptions)
  token = _token_of(options) or new_token()
  prism_location = options.view_as(PrismRunnerOptions).prism_location
  own_prism = (isinstance(pipeline.runner, PrismRunner) and not portable.job_endpoint
               and prism_location and os.path.isfile(prism_location))
  # Where Prism logs this job: its own log, or from here on the log of `make prism-up`'s server.
  log = PrismLog(os.path.join(job_dir(token), "prism.log") if own_prism else server_files(RUN_DIR)[1],
                 from_end=not own_prism)
  _quiet_job_message_thread()
  succeeded = False
  try:
    with contextlib.ExitStack() as stack:
      stack.callback(stop_processes, JOB_VARIABLE, token)
      stack.enter_context(_job_messages_quiet())
      stack.enter_context(_terminated_as_exit())
      prism = None
      if own_prism:
        portable.job_endpoint, prism = stack.enter_context(started_prism(prism_location, job_dir(token), token))
      elif _is_this_machine(portable.job_endpoint):
        _check_listening(portable.job_endpoint)  # still: Beam would wait --job_server_timeout for it
      try:
        result = pipeline.run()
        stack.enter_context(_watchdog(log, result, prism))
        result.wait_until_finish()
        result.metrics()  # while the job server still answers
      except Exception as error:  # pylint: disable=broad-except
        cause = _failure_cause(error, portable.job_endpoint, log)
        if cause is None:
          raise
        raise JobFailed(cause) from error
      succeeded = True
  finally:
    if succeeded and not os.environ.get(KEEP_LOGS_VARIABLE):
      shutil.rmtree(job_dir(token), ignore_errors=True)
    elif os.path.isdir(job_dir(token)):
      logging.info("The job's Prism and worker logs: %s", job_dir(token))
  return result


# Lines of Prism's log (--log_kind text) that say a job failed outside our code: the
# message, the text its `error` field (or else the message) must hold, what to say.
_WORKER_FAILURES = (
    ("process failed to start", "", "an SDK worker process could not start: {error}"),
    ("[SDK] Python (worker", "exited", "an SDK worker process exited ({tail})"),
    ("process failed while running", "", "an SDK worker's boot process exited ({error})"),
    ("Bundle Failed.", "SDK worker disconnected", "an SDK worker process went away (SDK worker disconnected)"),
    ("didn't get control connection", "", "an SDK worker never connected to Prism: {msg}"),
)
_JOB_ENDED = ("job failed", "pipeline done!", "pipeline completed")  # later lines are the clean-up's
_FIELD = r'{}="((?:[^"\\]|\\.)*)"'
GRACE_SECONDS = 5  # for Prism to fail a job by itself once a worker process died


class PrismLog:
  """The lines a Prism logs (--log_kind text) for one job, read as they come."""

  def __init__(self, path: str, from_end: bool):
    self.path = path
    self._offset = os.path.getsize(path) if from_end and os.path.exists(path) else 0
    self._start, self._lines, self._partial = self._offset, [], b""

  def new_lines(self) -> List[str]:
    """Whole lines written since the last call."""
    try:
      with open(self.path, "rb") as f:
        f.seek(self._offset)
        data = f.read()
    except OSError:
      return []
    self._offset += len(data)
    *lines, self._partial = (self._partial + data).split(b"\n")
    lines = [line.decode("utf-8", errors="replace") for line in lines]
    self._lines += lines
    return lines

  def worker_failure(self, lines: Optional[List[str]] = None) -> Optional[str]:
    """The first worker failure in `lines` (default: all read so far), before the job's
    end, as one line for a user; None if there is none."""
    for line in self._lines if lines is None else lines:
      msg, error = (re.search(_FIELD.format(name), line) for name in ("msg", "error"))
      msg = msg.group(1).replace(r"\n", "\n").replace(r'\"', '"') if msg else ""
      error = error.group(1) if error else ""
      if msg.startswith(_JOB_ENDED):
        return None
      for message, needle, explanation in _WORKER_FAILURES:
        if msg.startswith(message) and needle in (error or msg):
          tail = msg.split(":", 1)[-1].split("\n")[0].strip()
          return explanation.format(error=error, msg=msg, tail=tail) + f"; Prism's log: {self.path}"
    return None


@contextlib.contextmanager
def _watchdog(log: PrismLog, result, prism: Optional[subprocess.Popen]):
  """While the job runs: once a second, reads Prism's new log lines; after a worker
  failure, gives Prism GRACE_SECONDS to fail the job, then cancels it (and stops the
  job's own Prism if that does not end it), so that `wait_until_finish` returns."""
  import threading  # pylint: disable=g-import-not-at-top
  done = threading.Event()

  def watch():
    while not done.wait(1.0):
      if log.worker_failure(log.new_lines()):
        break
    else:
      return
    if done.wait(GRACE_SECONDS):
      return
    logging.warning("A worker process died and the job did not end: cancelling it")
    with contextlib.suppress(Exception):
      result.cancel()
    if not done.wait(GRACE_SECONDS) and prism is not None:
      kill_group(prism)

  thread = threading.Thread(target=watch, name="prism_watchdog", daemon=True)
  thread.start()
  try:
    yield
  finally:
    done.set()
    thread.join()


def _failure_cause(error: Exception, endpoint: Optional[str], log: PrismLog) -> Optional[str]:
  """One line for a job that failed because its job server or a worker process went away;
  None for any other failure."""
  import grpc  # pylint: disable=g-import-not-at-top
  if isinstance(error, grpc.FutureTimeoutError):
    return f"no job server answered at {endpoint} (start one with `make prism-up`, or pass --job_endpoint)"
  log.new_lines()
  cause = log.worker_failure()
  if cause is None and isinstance(error, grpc.RpcError) and error.code() == grpc.StatusCode.UNAVAILABLE:
    cause = f"the job server at {endpoint} went away during the job ({error.details()})"
  return cause


def _quiet_job_message_thread() -> None:
  """When the job server goes away, the portable runner's message thread dies with a
  traceback on stderr; `run` says the same in one line. (Installed once: the thread can
  die after `run` has returned.)"""
  import threading  # pylint: disable=g-import-not-at-top
  if getattr(threading.excepthook, "quiet_job_messages", False):
    return
  previous = threading.excepthook

  def hook(args):
    if args.thread is None or args.thread.name != "wait_until_finish_read":
      previous(args)

  hook.quiet_job_messages = True
  threading.excepthook = hook


@contextlib.contextmanager
def _job_messages_quiet():
  """Keeps the portable runner's job messages off the console: it logs them on the root
  logger ("starting job-001", a failed job's whole stack), and the job's Prism log has them."""
  job_messages = logging.Filter()
  job_messages.filter = lambda record: not record.pathname.endswith("portable_runner.py")
  logging.getLogger().addFilter(job_messages)
  try:
    yield
  finally:
    logging.getLogger().removeFilter(job_messages)


@contextlib.contextmanager
def _terminated_as_exit():
  """SIGTERM (a CI timeout, `kill`) ends the job like Ctrl-C does, through `run`'s cleanup."""
  import threading  # pylint: disable=g-import-not-at-top
  if threading.current_thread() is not threading.main_thread():
    yield
    return

  def terminate(signum, frame):  # pylint: disable=unused-argument
    raise SystemExit(128 + signal.SIGTERM)

  previous = signal.signal(signal.SIGTERM, terminate)
  try:
    yield
  finally:
    signal.signal(signal.SIGTERM, previous)
