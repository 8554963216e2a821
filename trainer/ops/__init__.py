"""A native parser for the pipeline's records, built from source the first time it is needed.

`tf.io.parse_sequence_example` parses any SequenceExample, and on the pipeline's layout
(one int64 Feature per time step) that generality costs more CPU than reading the shards.
`parse_token_sequences.cc` parses that layout only, in one loop over the wire format, at a
fraction of the cost (BENCHMARKS.md, "Trainer input"). It is compiled against the
installed TensorFlow with the C++ compiler (`$CXX`, else `g++`) into this directory, or the
user cache if this directory is read-only, under a name that changes with the source and
the TensorFlow version, so a stale build is never loaded.

Nothing depends on it: without a compiler, or when the build or the load fails, the
trainer parses with `tf.io.parse_sequence_example` and one warning says why; with
RNN_NATIVE_PARSE=0 it does so without trying. On the pipeline's records both give the
same tensors; on hand-made or damaged wire data the op follows the protobuf library
(tests/trainer/test_ops.py).

    python -m trainer.ops    # builds it now (`make setup` does), prints where
"""

import functools
import hashlib
import logging
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
from typing import Dict, Optional, Sequence, Tuple

import quiet  # pylint: disable=unused-import  (before TensorFlow: `python -m trainer.ops` is a CLI too)
import tensorflow as tf

SOURCE = pathlib.Path(__file__).with_name("parse_token_sequences.cc")
# The source compiles without a warning with these; TensorFlow's own headers do not (they
# use what they deprecate), so they are included as system headers (-isystem), whose
# warnings are not ours to fix.
CXXFLAGS = ("-shared", "-fPIC", "-O2", "-Wall", "-Wextra")
DISABLE_ENV = "RNN_NATIVE_PARSE"  # "0": always use tf.io.parse_sequence_example


class BuildError(RuntimeError):
  """The op could not be compiled; the message holds the compiler's output."""


def compiler() -> Optional[str]:
  """The C++ compiler's path ($CXX, else g++), or None if it is not on PATH."""
  return shutil.which(os.environ.get("CXX", "g++"))


def _flags() -> Tuple[list, list]:
  return list(tf.sysconfig.get_compile_flags()), list(tf.sysconfig.get_link_flags())


def library_name() -> str:
  """The file name of the build for this source, TensorFlow build and compiler flags.

  Include and library paths are left out: they name where TensorFlow is installed, not
  which build it is, and a build copied to another machine with the same TensorFlow
  must be found there (README, Troubleshooting).
  """
  compile_flags, link_flags = _flags()
  flags = [flag for flag in compile_flags + link_flags if not flag.startswith(("-I", "-L"))]
  key = hashlib.sha256(SOURCE.read_bytes())
  key.update(" ".join([tf.version.VERSION, tf.version.GIT_VERSION, tf.version.COMPILER_VERSION, *CXXFLAGS,
                       *flags]).encode())
  return f"_parse_token_sequences-{key.hexdigest()[:16]}.so"


def _directories():
  directories = [SOURCE.parent]
  try:
    cache = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache")
  except RuntimeError:  # no home directory to find a cache in
    return directories
  return directories + [cache / "rnn-sequence-pipeline" / "ops"]


def build() -> pathlib.Path:
  """Compiles the op (unless an up-to-date build exists) and returns the library's path.

  Raises:
    BuildError: no compiler, no writable directory, or the compiler failed.
  """
  name = library_name()
  for directory in _directories():
    if (directory / name).exists():
      return directory / name
  cxx = compiler()
  if cxx is None:
    raise BuildError(f"no C++ compiler: {os.environ.get('CXX', 'g++')} is not on PATH (set CXX)")
  compile_flags, link_flags = _flags()
  errors = []
  for directory in _directories():
    try:
      directory.mkdir(parents=True, exist_ok=True)
      # Compile to a temporary name and rename: processes building at once never load half a file.
      fd, partial = tempfile.mkstemp(suffix=".so.partial", dir=directory)
      os.close(fd)
    except OSError as error:
      errors.append(f"{directory}: {error}")
      continue
    includes = [part for flag in compile_flags
                for part in (("-isystem", flag[2:]) if flag.startswith("-I") else (flag,))]
    command = [cxx, *CXXFLAGS, *includes, str(SOURCE), "-o", partial, *link_flags]
    try:
      try:
        process = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
      except subprocess.TimeoutExpired as error:
        raise BuildError(f"{' '.join(command)} did not finish in {error.timeout} s") from error
      if process.returncode != 0:
        raise BuildError(f"{' '.join(command)} exited {process.returncode}:\n{process.stderr[-4000:]}")
      if process.stderr.strip():  # it builds, but a compiler or TensorFlow upgrade has something to say
        logging.warning("%s:\n%s", " ".join(command), process.stderr[-4000:])
      os.chmod(partial, 0o755)
      os.replace(partial, directory / name)
      if directory == SOURCE.parent:  # builds of an older source or TensorFlow (the cache may be shared)
        for stale in directory.glob("_parse_token_sequences-*.so"):
          if stale.name != name:
            stale.unlink(missing_ok=True)
      return directory / name
    finally:
      if os.path.exists(partial):
        os.remove(partial)
  raise BuildError("no writable directory for the build: " + "; ".join(errors))


@functools.lru_cache(maxsize=None)
def load():
  """The op's module, built if needed; None (with one warning) if it cannot be had."""
  if os.environ.get(DISABLE_ENV, "1") == "0":
    logging.info("%s=0: records are parsed by tf.io.parse_sequence_example", DISABLE_ENV)
    return None
  try:
    path = build()
    module = tf.load_op_library(str(path))
  except (BuildError, OSError, tf.errors.OpError) as error:
    logging.warning("The native record parser is not available, so records are parsed by "
                    "tf.io.parse_sequence_example (same result, more CPU; %s=0 skips this attempt): %s",
                    DISABLE_ENV, error)
    return None
  logging.info("Records are parsed by the native parser %s", path)
  return module


def available() -> bool:
  """Whether the op can be used here (it is built and loaded on the first call)."""
  return load() is not None


def parse_token_sequences(serialized: tf.Tensor, context_keys: Sequence[str], sequence_keys: Sequence[str],
                          value_keys: Sequence[str] = ()) -> Tuple[Dict[str, tf.Tensor], Dict[str, tf.RaggedTensor]]:
  """Serialized SequenceExamples [n] → context {key: [n] int64} and {key: [n, (steps)] int64},
  and for `value_keys` {key: [n, (steps), (values)] int64}.

  Every record must hold each context key as exactly one int64 value, and every step of a
  feature list of `sequence_keys` exactly one int64 value; a step of a `value_keys` list
  holds any number of int64 values (a Feature with no list set holds none); a feature list
  a record lacks has no steps.

  Raises:
    RuntimeError: the op is not available (see `available()`).
    tf.errors.InvalidArgumentError (when run): a record that breaks the layout.
  """
  module = load()
  if module is None:
    raise RuntimeError("the native record parser is not available (see trainer.ops.load)")
  context, values, row_splits, value_values, value_row_splits, value_splits = module.parse_token_sequences(
      serialized, context_keys=list(context_keys), sequence_keys=list(sequence_keys), value_keys=list(value_keys),
      num_context=len(context_keys), num_sequence=len(sequence_keys), num_value=len(value_keys))
  sequences = {key: tf.RaggedTensor.from_row_splits(value, splits, validate=False)
               for key, value, splits in zip(sequence_keys, values, row_splits)}
  sequences.update({key: tf.RaggedTensor.from_nested_row_splits(value, (steps, splits), validate=False)
                    for key, value, steps, splits in zip(value_keys, value_values, value_row_splits, value_splits)})
  return dict(zip(context_keys, context)), sequences


def main() -> int:
  logging.basicConfig(level=logging.INFO, format="%(message)s")
  try:
    path = build()
  except BuildError as error:
    logging.error("%s\nThe trainer will parse records with tf.io.parse_sequence_example.", error)
    return 1
  tf.load_op_library(str(path))
  print(f"native record parser: {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
