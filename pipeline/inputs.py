"""Input files: the --input, --eval_input and --test_input files listed, split into byte
ranges (or Parquet row groups), and opened through Beam's FileSystems.

An uncompressed UTF-8 text or JSON-lines file is read in byte ranges, so one large file is
read by many workers; a line belongs to the range its first byte falls in, as in Beam's
textio, and ranges are cut at '\\n' only. Everything past opening (decompression,
`--encoding`, the byte-order mark, line splitting) is `corpus`'s, which the trainer reads
raw files with too.
"""

import io
import os
from typing import Iterator, List, NamedTuple, Sequence

import tensorflow as tf
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from corpus import files
from corpus import lines
from corpus import parquet
from pipeline.config import PipelineConfig, UsageError

# Uncompressed inputs are split into ranges of this many bytes, so that workers share even
# one file evenly (a local runner hands a stage's elements out round-robin).
RANGE_BYTES = 4 << 20


class InputFile(NamedTuple):
  path: str
  size: int  # at listing time: a file found shorter when read is an error, not a short count


class FileRange(NamedTuple):
  """A part of a file to read: bytes [start, end), or for Parquet its row groups [start, end)."""
  path: str
  start: int
  end: int  # exclusive; -1 means "to the end of the file"
  listed_size: int = -1  # the file's size when listed; -1: unknown (not checked)


class InputChangedError(Exception):
  """An input file shrank or disappeared between listing and reading."""


def split_into_ranges(input_file: InputFile, splittable: bool = True) -> Iterator[FileRange]:
  """Byte ranges of a file; compressed files, and any file of a format that is not
  `splittable` (CoNLL: a record spans lines; another encoding: decoded from the start),
  stay whole."""
  if files.is_compressed(input_file.path) or not splittable or input_file.size <= RANGE_BYTES:
    yield FileRange(input_file.path, 0, -1, input_file.size)
    return
  for start in range(0, input_file.size, RANGE_BYTES):
    yield FileRange(input_file.path, start, min(start + RANGE_BYTES, input_file.size), input_file.size)


def split_into_row_groups(input_file: InputFile) -> Iterator[FileRange]:
  """A Parquet file's row groups, one range each, so a large file is read by many workers."""
  with open_raw(input_file.path, input_file.size) as f:
    groups = parquet.row_groups(f)
  for group in groups:
    yield FileRange(input_file.path, group.index, group.index + 1, input_file.size)


def open_raw(path: str, listed_size: int = -1):
  """The file's raw bytes (FileSystems.open, never decompressed); a file gone or shorter
  than listed is an error."""
  try:
    f = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
  except Exception as error:  # Beam raises BeamIOError, or the file system's own error
    raise InputChangedError(f"{path}: listed as an input, but it can no longer be opened ({error})") from None
  if listed_size >= 0:
    size = f.seek(0, io.SEEK_END)
    f.seek(0)
    if size < listed_size:
      f.close()
      raise InputChangedError(f"{path}: {listed_size} bytes when listed, {size} when read; "
                              "it changed while the job ran")
  return f


def open_for_lines(path: str, encoding: str = files.UTF8, listed_size: int = -1):
  """`corpus.files.open_for_lines` of the file at `path`, opened through Beam."""
  return files.open_for_lines(open_raw(path, listed_size), path, encoding)


def seek_to_range(f, file_range: FileRange) -> int:
  """Moves `f` to the first line that starts in the range; returns its offset.

  At 0 that is past a UTF-8 byte-order mark, if any; else past the rest of the line
  that started before the range (the range before reads it).
  """
  if file_range.start == 0:
    return files.skip_bom(f)
  f.seek(file_range.start - 1)
  return file_range.start - 1 + lines.skip_line(f)


# --- listing the inputs ----------------------------------------------------------------


def _is_glob(pattern: str) -> bool:
  return any(char in pattern for char in "*?[")


def _is_local(path: str) -> bool:
  return "://" not in path


def _matches(pattern: str):
  """(path, size) of each file `pattern` names: a file, the files directly inside a
  directory (not hidden), or a glob's matches that are files."""
  is_dir = tf.io.gfile.isdir(pattern)
  try:
    matched = FileSystems.match([os.path.join(pattern, "*") if is_dir else pattern])[0].metadata_list
  except Exception as error:  # pylint: disable=broad-except  # Beam raises BeamIOError
    raise UsageError(f"--input {pattern}: {error}") from None
  found = []
  for metadata in matched:
    path = metadata.path
    if is_dir and os.path.basename(path.rstrip("/")).startswith("."):
      continue
    if path.endswith("/") or (_is_local(path) and os.path.isdir(path)):
      continue  # a glob or directory names files; a directory inside is not read
    if is_dir and _is_local(path) and not os.path.isfile(path):
      continue  # nor a FIFO or socket in a directory
    found.append((path, metadata.size_in_bytes))
  if not found:
    what = "directory holds no regular, non-hidden file" if is_dir else (
        "no file matches" if _is_glob(pattern) else "no such file")
    raise UsageError(f"--input {pattern}: {what}")
  return found


def _check_readable(path: str) -> None:
  """A local input that is not a regular file, or cannot be opened, is named now, not
  found halfway through the job."""
  if not _is_local(path):
    return
  if not os.path.isfile(path):
    raise UsageError(f"--input {path}: not a regular file")
  try:
    with open(path, "rb") as f:
      f.read(1)
  except OSError as error:
    raise UsageError(f"--input {path}: cannot be read ({error.strerror or error})") from None


def match_inputs(patterns: Sequence[str]) -> List[InputFile]:
  """Expands files, directories and globs, in a stable order; see `_matches`.

  A pattern that names no file, and an input that cannot be read, are usage errors.
  """
  sizes = {}
  for pattern in patterns:
    for path, size in _matches(pattern):
      sizes[path] = size
  for path in sizes:
    _check_readable(path)
  return [InputFile(path, size) for path, size in sorted(sizes.items())]


class InputFiles(NamedTuple):
  """The files of each kind of --input, as `match_inputs` lists them."""
  train: List[InputFile]  # --input: train, and eval by --eval_fraction without eval files
  eval: List[InputFile] = []  # --eval_input
  test: List[InputFile] = []  # --test_input

  def all(self) -> List[InputFile]:
    return self.train + self.eval + self.test

  def splits(self) -> List[str]:
    """The splits the output holds: train and eval always, test when given."""
    return ["train", "eval"] + (["test"] if self.test else [])


def match_input_files(config: PipelineConfig) -> InputFiles:
  """`match_inputs` of --input, --eval_input and --test_input; a file in two of them is a usage error."""
  groups = InputFiles(match_inputs(config.inputs), match_inputs(config.eval_inputs) if config.eval_inputs else [],
                      match_inputs(config.test_inputs) if config.test_inputs else [])
  flags = {}
  for flag, listed in (("--input", groups.train), ("--eval_input", groups.eval), ("--test_input", groups.test)):
    for f in listed:
      if f.path in flags:
        raise UsageError(f"{flag} {f.path}: it is also an {flags[f.path]}; a file belongs to one split")
      flags[f.path] = flag
    if listed and config.file_format == "parquet":  # the columns, from the first file's footer
      _check_parquet_columns(listed[0].path, flag, config)
  return groups


def _check_parquet_columns(path: str, flag: str, config: PipelineConfig) -> None:
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
  try:
    with open_raw(path) as f:
      schema = pq.ParquetFile(f).schema_arrow
  except Exception as error:  # pylint: disable=broad-except  # pyarrow's ArrowInvalid, an OSError, ...
    raise UsageError(f"{flag} {path}: not a Parquet file ({error})") from None
  lacking = parquet.missing_columns(schema, config.task, config.fields())
  if lacking:
    raise UsageError(f"{flag} {path}: no column {lacking} for --task {config.task} (its columns: "
                     f"{', '.join(schema.names)}); name yours with --text_field, --tokens_field, --labels_field "
                     "or --label_field")
