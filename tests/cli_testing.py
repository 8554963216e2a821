"""Runs real CLIs one after another in one fresh interpreter, as `python -m` runs each, and
reports what each imported and what the process wrote to its console.

The light tools (pipeline.inspect, trainer.predict, trainer.evaluate, trainer.batches)
promise not to import Apache Beam or TensorFlow Transform (Beam is slow to import, and TFT
switches `tf.keras` to the legacy package) and to print their own output only, without
TensorFlow's C++ start-up lines. Both are properties of a process: an import inside a
function counts, and the start-up lines come when the first CLI loads TensorFlow. One
interpreter for all of them pays for the TensorFlow import once.
"""

import json
import os
import subprocess
import sys

from tests.conftest import ROOT

HEAVY_PACKAGES = ("apache_beam", "tensorflow_transform")
_MARKER = "CLI_RESULTS "

# `python -c` with argv [-c, JSON list of {module, args, stdin}]: runs each module as
# __main__ with its own sys.argv, stdin, stdout and stderr, then prints the results.
_RUNNER = f"""
import contextlib, io, json, logging, runpy, sys
results = []
for command in json.loads(sys.argv[1]):
  sys.argv = [command["module"]] + command["args"]
  sys.stdin = io.StringIO(command["stdin"] or "")
  logging.root.handlers.clear()  # each CLI's main() configures logging onto its own stderr
  stdout, stderr = io.StringIO(), io.StringIO()
  code = 0
  with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
    try:
      runpy.run_module(command["module"], run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
      code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
  imported = sorted(name for name in sys.modules if name.split(".")[0] in {HEAVY_PACKAGES!r})
  results.append({{"returncode": code, "stdout": stdout.getvalue(), "stderr": stderr.getvalue(),
                  "imported": imported}})
sys.stdout.write({_MARKER!r} + json.dumps(results) + "\\n")
"""


def run_clis_in_one_process(commands, env=None):
  """Runs each (module, args, stdin or None) in turn in one new interpreter, from the repo root.

  `env` adds to this process's environment; a variable given as None is removed (as
  TF_CPP_MIN_LOG_LEVEL, to see what a user's console shows). Returns (results, console):
  per command a dict of returncode, stdout, stderr (what Python wrote) and imported (the
  heavy packages' modules loaded so far in the process); console is what reached the
  process's stderr outside the commands' Python streams (C++ logging, for one).
  """
  env = {**os.environ, **(env or {})}
  specs = [{"module": module, "args": [str(arg) for arg in args], "stdin": stdin} for module, args, stdin in commands]
  process = subprocess.run(
      [sys.executable, "-c", _RUNNER, json.dumps(specs)], cwd=ROOT, capture_output=True, text=True,
      env={name: value for name, value in env.items() if value is not None}, timeout=900)
  lines = [line for line in process.stdout.splitlines() if line.startswith(_MARKER)]
  assert process.returncode == 0 and lines, process.stderr[-4000:]
  return json.loads(lines[-1][len(_MARKER):]), process.stderr
