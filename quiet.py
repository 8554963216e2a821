"""Keeps TensorFlow's C++ start-up log lines off the console of the project's CLIs.

Every entry point imports this module first, before anything that imports TensorFlow:

    import quiet  # pylint: disable=unused-import  (first: before TensorFlow is imported)

Two kinds of lines would otherwise come before a CLI's own output:
- TensorFlow's C++ logging, which reads `TF_CPP_MIN_LOG_LEVEL` once, when TensorFlow is
  loaded. It is set here (unless the environment already sets it) to 3: fatal only. Level 2
  (errors) still lets through error lines that report nothing wrong: where oneDNN is on (by
  default on x86 CPUs with AVX-512 VNNI or BF16, or AMX), its graph rewrite logs "oneDNN
  supports DT_INT64 only on platforms with AVX-512" at ERROR for integer and boolean ops it
  passes over, in the pipeline, the trainer and predict alike. An error that stops a run
  reaches the console as the Python exception TensorFlow raises, which no log level hides.
- absl's C++ logging before `absl::InitializeLog()`, which TensorFlow never calls: the
  start-up lines ("All log messages before absl::InitializeLog() is called are written to
  STDERR", `cudart_stub.cc` on a machine without CUDA, `cuda_platform.cc` "failed call to
  cuInit", `cpu_feature_guard.cc`) ignore `TF_CPP_MIN_LOG_LEVEL` and `ABSL_MIN_LOG_LEVEL`
  alike. So TensorFlow is imported, and its devices listed (which calls cuInit; it does
  not create the runtime, so logical devices can still be configured), with the process's
  stderr (file descriptor 2, which the C++ code writes to) sent to a temporary file; what
  the import wrote is then copied to the real stderr without those lines. Anything else
  (a Python warning, a fatal error) is kept.

`--verbose` on the command line of any CLI that imports this module, or `RNN_VERBOSE=1`,
turns all of this off (and sets `TF_CPP_MIN_LOG_LEVEL=0`, unless the environment sets it):
every line TensorFlow writes reaches the console. The flag is taken out of `sys.argv`
here, before the CLI's own parser sees it; `add_flag` lists it in a parser's `--help`.
"""

import argparse
import logging
import os
import re
import sys
import tempfile

VERBOSE_FLAG = "--verbose"
VERBOSE_ENV = "RNN_VERBOSE"

# absl's line prefix: severity letter, date, time, thread id, file:line]. Before
# InitializeLog the date and time are zeros and seconds since the epoch ("I0000 00:00:17...").
_GLOG = re.compile(r"^[IWE]\d{4} [\d:.]+ +\d+ [\w.-]+:\d+\] ")
# Error-level start-up lines that only say "no GPU here".
_NO_GPU = re.compile(r"cuInit|cuda_platform|Unable to register cu(DNN|FFT|BLAS) factory|TensorRT")
_STARTUP_NOISE = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
                  "To enable the following instructions:")  # cpu_feature_guard's second line


def _from_command_line() -> bool:
  """Whether --verbose was given to a CLI run as `python -m` (and takes it out of sys.argv).

  Only the module run as __main__ counts: under pytest, or when a library imports an
  entry point, sys.argv belongs to someone else.
  """
  main = sys.modules.get("__main__")
  spec = getattr(main, "__spec__", None)
  if spec is None or not spec.name.startswith(("pipeline.", "trainer.", "benchmarks.")):
    return False
  if VERBOSE_FLAG not in sys.argv[1:]:
    return False
  sys.argv[1:] = [arg for arg in sys.argv[1:] if arg != VERBOSE_FLAG]
  return True


VERBOSE = _from_command_line() or os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def is_noise(line: str) -> bool:
  """Whether a line TensorFlow writes while it loads is start-up noise (see the module doc)."""
  if line.startswith(_STARTUP_NOISE):
    return True
  match = _GLOG.match(line)
  return bool(match) and (line[0] in "IW" or bool(_NO_GPU.search(line)))


def _import_tensorflow_quietly() -> None:
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      tf.config.list_physical_devices()
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      kept = [line for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True)
              if not is_noise(line)]
      sys.stderr.write("".join(kept))
      sys.stderr.flush()


def configure_logging(*noisy: str) -> None:
  """A CLI's logging: its own messages at INFO; TensorFlow's, absl's and `noisy` Python
  loggers at WARNING, so the console holds what the CLI itself says."""
  logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
  for name in ("tensorflow", "absl") + noisy:
    logging.getLogger(name).setLevel(logging.WARNING)


def add_flag(parser: argparse.ArgumentParser) -> None:
  """Lists --verbose in a CLI's --help (the flag itself is read when this module is imported)."""
  parser.add_argument(VERBOSE_FLAG, action="store_true", default=VERBOSE,
                      help="show tracebacks and TensorFlow's C++ log lines (start-up, device, runtime), "
                      "hidden by default")


if VERBOSE:
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
else:
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  if "tensorflow" not in sys.modules:
    _import_tensorflow_quietly()
