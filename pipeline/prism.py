r"""Prism's processes: the binaries `make setup` built, a Prism started for one job, the
standalone job server, and stopping every process of a job or server by its environment.

    python -m pipeline.prism up [--port 8073]     # make prism-up
    python -m pipeline.prism down                 # make prism-down

Every process a job starts (its Prism, boot, SDK workers) carries `RNN_BEAM_JOB=<token>`
in its environment; the standalone server's carry `RNN_BEAM_SERVER=<its run folder>`.
`stop_processes` finds them by it, not by their parents: boot starts each worker in a
process group of its own, and a worker whose boot died belongs to no one. Logs and pids go
under build/beam/run/. Nothing here imports Beam, so the two commands start at once.
"""

import argparse
import contextlib
import logging
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from typing import Iterator, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEAM_DIR = os.path.join(ROOT, "build", "beam")  # prism, boot and VERSION: `make setup`
VERSION_FILE = os.path.join(BEAM_DIR, "VERSION")  # the Beam version they were built at
RUN_DIR = os.path.join(BEAM_DIR, "run")
SERVER_PORT = 8073
JOB_VARIABLE, SERVER_VARIABLE = "RNN_BEAM_JOB", "RNN_BEAM_SERVER"
START_SECONDS = 60  # for Prism to listen
# A job's own Prism stops itself when it has had no job for this long: the driver normally
# stops it, this is for a driver that was killed before it could.
IDLE_SHUTDOWN = "120s"
_LISTENING = re.compile(r'msg="Serving JobManagement" endpoint=(\S+)')


class Unavailable(Exception):
  """What the runner asked for is not here: Prism or boot not built (or for another Beam
  version), or no job server at a local --job_endpoint."""


def binary(name: str) -> str:
  """build/beam/NAME (`prism` or `boot`), if it was built for the installed Beam version."""
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  version = metadata.version("apache-beam")  # without importing Beam
  path = os.path.join(BEAM_DIR, name)
  try:
    with open(VERSION_FILE, encoding="utf-8") as f:
      built = f.read().strip()
  except OSError:
    built = None
  if built != version or not os.access(path, os.X_OK):
    raise Unavailable(f"{path} for Apache Beam {version} is not built: run `make setup` (it needs Go)")
  return path


def _prism_command(prism: str, port: int, *flags: str) -> List[str]:
  # No web UI: it, like the job port, would listen on every interface.
  return [prism, f"--job_port={port}", "--serve_http=false", "--log_kind=text", *flags]


@contextlib.contextmanager
def started_prism(prism: str, folder: str, token: str) -> Iterator[tuple]:
  """Prism on a free port for one job: yields its endpoint and process; stops it after."""
  import resource  # pylint: disable=g-import-not-at-top
  os.makedirs(folder, exist_ok=True)
  log_path = os.path.join(folder, "prism.log")
  children = resource.getrusage(resource.RUSAGE_CHILDREN)
  with open(log_path, "ab") as log:
    process = subprocess.Popen(
        _dies_with_this_process(_prism_command(prism, 0, f"--idle_shutdown_timeout={IDLE_SHUTDOWN}")),
        stdin=subprocess.DEVNULL,
        stdout=log, stderr=subprocess.STDOUT, cwd=folder, env={**os.environ, JOB_VARIABLE: token},
        start_new_session=True)
  try:
    endpoint = _wait_until_listening(process, log_path)
    logging.info("Prism for this job: %s (pid %d, log %s)", endpoint, process.pid, log_path)
    yield endpoint, process
  finally:
    kill_group(process)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    logging.info("Prism used %.1f CPU-s (with the worker processes it started)",
                 after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime)


def _dies_with_this_process(command: List[str]) -> List[str]:
  """`command`, run so that the kernel kills it if this process dies first (SIGKILL included),
  where util-linux's setpriv is installed; else Prism's idle shutdown ends it later."""
  setpriv = shutil.which("setpriv")
  return [setpriv, "--pdeathsig", "KILL", "--", *command] if setpriv else command


def _wait_until_listening(process: subprocess.Popen, log_path: str, log_start: int = 0) -> str:
  """The endpoint Prism logs (in `log_path`, from `log_start` on) once it listens; an error
  if it exits or takes too long."""
  deadline = time.monotonic() + START_SECONDS
  while True:
    with open(log_path, "rb") as f:
      f.seek(log_start)
      log = f.read().decode("utf-8", errors="replace")
    found = _LISTENING.search(log)
    if found:
      return found.group(1)
    if time.monotonic() > deadline:
      kill_group(process)
      raise RuntimeError(f"Prism did not listen within {START_SECONDS} s; see {log_path}")
    try:
      process.wait(timeout=0.02)  # returns at once if it exits
    except subprocess.TimeoutExpired:
      continue
    last = (log.strip().splitlines() or ["no output"])[-1]
    raise RuntimeError(f"Prism exited with {process.returncode} before it listened: {last} (see {log_path})")


def kill_group(process: subprocess.Popen) -> None:
  """SIGKILLs a process started in a session of its own, with its group, and reaps it."""
  if process.returncode is None:  # not reaped yet, so its pid is still its own
    with contextlib.suppress(ProcessLookupError):
      os.killpg(process.pid, signal.SIGKILL)
  process.wait()


def _processes_with(variable: str, value: str) -> List[int]:
  """Pids of this user's processes whose environment sets `variable` to `value`."""
  entry = f"{variable}={value}".encode()
  found = []
  for name in os.listdir("/proc"):
    if name.isdigit() and int(name) != os.getpid():
      try:
        with open(f"/proc/{name}/environ", "rb") as f:
          if entry in f.read().split(b"\0"):
            found.append(int(name))
      except OSError:  # gone, or another user's
        pass
  return found


def stop_processes(variable: str, value: str, timeout: float = 30) -> List[int]:
  """SIGKILLs every process whose environment sets `variable` to `value` and waits until
  each has exited; returns their pids.

  Repeated until none is left, as boot restarts an SDK worker that dies. Processes are
  found by their environment, not their parents: boot starts each worker in a process
  group of its own, and a worker whose boot died belongs to no one.
  """
  stopped, deadline = [], time.monotonic() + timeout
  while time.monotonic() < deadline:
    pids = _processes_with(variable, value)
    if not pids:
      break
    for pid in pids:
      with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    for pid in pids:
      _wait_for_exit(pid, deadline)
    stopped += pids
  return stopped


def _wait_for_exit(pid: int, deadline: float) -> None:
  """Waits until `pid` (not necessarily a child) has exited, through a pidfd."""
  try:
    fd = os.pidfd_open(pid)
  except ProcessLookupError:
    return
  try:
    select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
  finally:
    os.close(fd)


# The standalone job server (make prism-up / prism-down).

def server_files(run_dir: str):
  return os.path.join(run_dir, "server.pid"), os.path.join(run_dir, "server.log")


def running_server(run_dir: str) -> Optional[int]:
  """The standalone server's pid, if its pid file names a Prism that still runs."""
  pid_path, _ = server_files(run_dir)
  try:
    with open(pid_path, encoding="utf-8") as f:
      pid = int(f.read().split()[0])
    with open(f"/proc/{pid}/environ", "rb") as f:
      running = f"{SERVER_VARIABLE}={run_dir}".encode() in f.read().split(b"\0")
  except (OSError, ValueError, IndexError):
    return None
  return pid if running else None


def server_up(port: int = SERVER_PORT, run_dir: str = RUN_DIR) -> int:
  """Starts a standalone Prism job server on `port`, unless one runs; prints one line."""
  run_dir = os.path.abspath(run_dir)
  pid = running_server(run_dir)
  if pid:
    print(f"Prism already runs (pid {pid}); `make prism-down` stops it")
    return 0
  try:
    prism = binary("prism")
  except Unavailable as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  os.makedirs(run_dir, exist_ok=True)
  pid_path, log_path = server_files(run_dir)
  with open(log_path, "ab") as log:
    log_start = log.tell()  # the log of earlier servers comes before
    process = subprocess.Popen(
        _prism_command(prism, port), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=run_dir,
        env={**os.environ, SERVER_VARIABLE: run_dir}, start_new_session=True)
  try:
    endpoint = _wait_until_listening(process, log_path, log_start)
  except RuntimeError as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  with open(pid_path, "w", encoding="utf-8") as f:
    f.write(f"{process.pid}\n")
  print(f"Prism job server on {endpoint} (pid {process.pid}, log {log_path}): submit with "
        f"--runner PortableRunner --job_endpoint {endpoint}; `make prism-down` stops it")
  return 0


def server_down(run_dir: str = RUN_DIR) -> int:
  """Stops the standalone server and every process it started; prints one line."""
  run_dir = os.path.abspath(run_dir)
  pid = running_server(run_dir)
  stopped = stop_processes(SERVER_VARIABLE, run_dir)
  pid_path, _ = server_files(run_dir)
  with contextlib.suppress(FileNotFoundError):
    os.remove(pid_path)
  if pid:
    print(f"Prism job server stopped (pid {pid}, {len(stopped)} processes in all)")
  else:
    print("No Prism job server was running" + (f"; stopped {len(stopped)} of its processes" if stopped else ""))
  return 0


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m pipeline.prism", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("command", choices=("up", "down"))
  parser.add_argument("--port", type=int, default=SERVER_PORT, help="up: the job port")
  parser.add_argument("--run_dir", default=RUN_DIR, help="where the server's pid and log go")
  args = parser.parse_args(argv)
  return server_up(args.port, args.run_dir) if args.command == "up" else server_down(args.run_dir)


if __name__ == "__main__":
  sys.exit(main())
