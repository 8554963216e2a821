#!/bin/sh
# The `python` that boot runs for its own commands (boot_worker.sh points PYTHON_PATH here).
# Before it starts a worker, boot lists every installed package twice with
# `python -m pip freeze --all`, only for its log: about a second of CPU each, at every
# worker's start. The worker runs the driver's own venv, so that list says nothing new:
# it is skipped. Everything else (`--version`, pip installs of staged packages) runs as asked.
if [ "$*" = "-m pip freeze --all" ]; then
  echo "(not listed: the worker runs $(command -v python), the driver's venv)"
  exit 0
fi
exec python "$@"
