"""Input files and their byte ranges, opened through Beam's FileSystems.

An uncompressed UTF-8 text or JSON-lines file is read in byte ranges, so one large file is
read by many workers; a line belongs to the range its first byte falls in, as in Beam's
textio, and ranges are cut at '\\n' only. Everything past opening (decompression,
`--encoding`, the byte-order mark, line splitting) is `corpus`'s, which the trainer reads
raw files with too.
"""

import io
from typing import Iterator, NamedTuple

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from corpus import files
from corpus import lines
from corpus import parquet

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
