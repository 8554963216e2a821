#!/bin/sh
# Starts one Python SDK worker through Beam's boot program, for --environment_type PROCESS:
#   --environment_config '{"command": "pipeline/boot_worker.sh", "env": {...}}'
# pipeline/runners.py writes that config when --environment_type PROCESS comes without one.
#
# The runner calls `COMMAND --id=ID --provision_endpoint=HOST:PORT`. This script
# - strips the single quotes Prism puts around the id (--id='job-001[job]_...'): boot
#   would present them to the runner, which knows no such worker, and the job would wait
#   for it forever;
# - runs boot in a folder of this worker's own, under $BEAM_WORKER_DIR (boot writes
#   pipeline_options.json into its working directory and stages files in its
#   --semi_persist_dir, /tmp by default);
# - sets RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT, so that boot runs the `python` first on
#   PATH (the env's PATH puts the project's venv there, and PYTHONPATH its code) instead
#   of creating a venv under /opt/apache/beam-venv and installing into it;
# - points PYTHON_PATH, the python boot runs its pip commands with, at boot_python.sh,
#   which skips the two `pip freeze` listings boot makes for its log.
#
# Environment: BEAM_BOOT (the boot binary; default build/beam/boot beside this script's
# folder), BEAM_WORKER_DIR (default /tmp/beam-workers).
set -eu

id=
for arg do
  shift
  case $arg in
    --id=*) id=${arg#--id=}; id=${id#\'}; id=${id%\'}; arg=--id=$id ;;
  esac
  set -- "$@" "$arg"
done

here=$(cd "$(dirname "$0")" && pwd)
boot=${BEAM_BOOT:-$here/../build/beam/boot}
dir=${BEAM_WORKER_DIR:-/tmp/beam-workers}/$(printf %s "$id" | tr -c 'A-Za-z0-9._-' _)
mkdir -p "$dir"
cd "$dir"
export RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT=1
export PYTHON_PATH="$here/boot_python.sh"
exec "$boot" "$@" --semi_persist_dir="$dir"
