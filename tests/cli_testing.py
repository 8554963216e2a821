"""Runs a real CLI as `python -m` does, and reports whether it imported Beam or TFT.

The light tools (pipeline.inspect, trainer.predict) promise not to import Apache Beam or
TensorFlow Transform: Beam is slow to import, and TFT switches `tf.keras` to the legacy
package. The check runs the whole command, so an import inside a function counts too.
"""

import json
import os
import subprocess
import sys

from tests.conftest import ROOT

HEAVY_PACKAGES = ("apache_beam", "tensorflow_transform")
_MARKER = "IMPORTED_HEAVY_PACKAGES "

# `python -c` with argv [-c, module, args...]: run the module as __main__, then list what it imported.
_RUNNER = f"""
import json, runpy, sys
module = sys.argv[1]
sys.argv = [module] + sys.argv[2:]
code = 0
try:
  runpy.run_module(module, run_name="__main__", alter_sys=True)
except SystemExit as exit_:
  code = exit_.code
imported = sorted(name for name in sys.modules if name.split(".")[0] in {HEAVY_PACKAGES!r})
sys.stdout.flush()
print({_MARKER!r} + json.dumps(imported), file=sys.stderr)
sys.exit(code)
"""


def run_cli_listing_imports(module, *args, stdin=None):
  """Runs `python -m module args` (stdin: text to feed it); returns (process, heavy modules imported).

  The marker line is removed from the process's stderr, so its last line is the CLI's own.
  """
  process = subprocess.run(
      [sys.executable, "-c", _RUNNER, module, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
      input=stdin, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=900)
  lines = process.stderr.rstrip("\n").split("\n")
  assert lines[-1].startswith(_MARKER), process.stderr[-4000:]
  process.stderr = "\n".join(lines[:-1]) + "\n"
  return process, json.loads(lines[-1][len(_MARKER):])
