"""What trainer.evaluate and trainer.predict share: MODEL_DIR's export, and raw files read
by the pipeline's own reader (`corpus`) and batched for the export's `raw` signature.

No Beam, no TFT, no Keras: the export holds the model and the pipeline's transform.
"""

import io
import json
import os
from typing import Iterator, NamedTuple, Optional, Sequence

import numpy as np
import tensorflow as tf

import contract
from corpus import files
from corpus import parquet
from corpus import reader
from corpus import records
from trainer.config import EXPORT_DIR, MODEL_FILE


class UsageError(Exception):
  """A wrong --model_dir, --data_dir or --input: exit 2 with one line that says what to do."""


class Model(NamedTuple):
  loaded: object  # the SavedModel; keep it: it owns the variables its signatures use
  task: str
  description: dict  # MODEL_DIR/model.json


def load_model(model_dir: str) -> Model:
  """MODEL_DIR → its export and model.json.

  Raises:
    UsageError: there is no export there, or it is not one that trainer.task writes.
  """
  if not tf.io.gfile.isdir(model_dir):
    raise UsageError(f"--model_dir {model_dir}: no such directory; pass the --model_dir of trainer.task")
  export_dir = os.path.join(model_dir, EXPORT_DIR)
  if not tf.io.gfile.isdir(export_dir):
    if tf.saved_model.contains_saved_model(model_dir):
      raise UsageError(f"--model_dir {model_dir} is the export itself; pass its parent directory")
    hint = ("it looks like a pipeline OUTPUT_DIR (pass that as --data_dir)"
            if tf.io.gfile.exists(os.path.join(model_dir, contract.METADATA_FILE))
            else "train with python -m trainer.task first")
    raise UsageError(f"no {EXPORT_DIR}/ in {model_dir}: {hint}")
  if not tf.saved_model.contains_saved_model(export_dir):
    raise UsageError(f"{export_dir} holds no SavedModel (an interrupted export?): "
                     "rerun python -m trainer.task with the same --model_dir")
  description_path = os.path.join(model_dir, MODEL_FILE)
  if not tf.io.gfile.exists(description_path):
    raise UsageError(f"no {MODEL_FILE} in {model_dir}: it was not written by trainer.task")
  with tf.io.gfile.GFile(description_path) as f:
    description = json.load(f)
  loaded = contract.load_saved_model(export_dir)
  if "raw" not in loaded.signatures:
    raise UsageError(f"{export_dir} has no raw signature: it was exported by an older version; "
                     "rerun python -m trainer.task with the same --model_dir to re-export")
  return Model(loaded, description["task"], description)


# --- raw files ---------------------------------------------------------------------------

Item = reader.Item


class RawFile(NamedTuple):
  """How to read a raw file: the pipeline's options for it."""
  path: str
  file_format: str
  encoding: str = files.UTF8
  label_column: Optional[str] = None  # CoNLL-U: upos by default; CoNLL: the last column
  max_record_bytes: int = records.DEFAULT_MAX_RECORD_BYTES
  fields: records.Fields = records.DEFAULT_FIELDS  # jsonl, parquet: the names of the fields


def add_raw_file_flags(parser) -> None:
  """--input's reading options: the pipeline's own flags of the same names and defaults."""
  parser.add_argument("--encoding", default=files.UTF8,
                      help="the --input file's encoding, any Python codec (default utf-8)")
  parser.add_argument("--label_column", default=None,
                      help="CoNLL-U: upos, xpos, deprel, feats, misc or a column number; CoNLL: a column number "
                      "(default: the column the model's training data used, else upos / the last column)")
  parser.add_argument("--max_record_bytes", type=int, default=records.DEFAULT_MAX_RECORD_BYTES,
                      help="longer records are counted as record_too_long (default %(default)s)")
  for name in records.Fields._fields:
    parser.add_argument(f"--{name}_field", default=None,
                        help=f"jsonl, parquet: the name of the {name} field (default: the training data's, else {name})")


def raw_file_from_flags(args, model: "Model") -> RawFile:
  """The --input file and its reading options; --label_column defaults to the training data's.

  Raises:
    UsageError: an encoding or label column that cannot be used.
  """
  label_column = args.label_column
  if label_column is None:  # the column the model learned, if it is one of this format
    label_column = model.description.get("label_column")
    if label_column is not None and not str(label_column).isdigit() and args.format != "conllu":
      label_column = None
  try:
    files.is_utf8(args.encoding)
    if args.format in reader.BLOCK_FORMATS:
      records.label_column_index(label_column, args.format)
  except LookupError:
    raise UsageError(f"--encoding {args.encoding}: not an encoding Python knows") from None
  except ValueError as error:
    raise UsageError(str(error)) from None
  fields = records.Fields(**{name: getattr(args, f"{name}_field") or model.description.get("fields", {}).get(name, name)
                             for name in records.Fields._fields})
  return RawFile(args.input, args.format, args.encoding, label_column, args.max_record_bytes, fields)


def _open(raw_file: RawFile):
  """The file as `corpus.files.open_for_lines` gives it, opened with tf.io.gfile (any file system TF reads)."""
  path = raw_file.path
  if not tf.io.gfile.exists(path) or tf.io.gfile.isdir(path):
    raise UsageError(f"--input {path}: no such file")
  return files.open_for_lines(tf.io.gfile.GFile(path, "rb"), path, raw_file.encoding)


def has_tabs(raw_file: RawFile) -> bool:
  """CoNLL columns split on tabs if the file has any, else on runs of spaces (DESIGN.md)."""
  with _open(raw_file) as f:
    return reader.has_tabs(f)


def read_items(raw_file: RawFile, task: str, need_labels: bool, keep_skipped: bool = False) -> Iterator[Item]:
  """The records of a raw file by the pipeline's rules (`corpus.reader`), one Item each, in
  order, lazily.

  Args:
    raw_file: the file and how to read it.
    task: the model's task (which fields a record needs).
    need_labels: tag records need their labels (evaluate); without (predict), a CoNLL row's
      first column is its token and any others are kept as they are.
    keep_skipped: to write the file back: CoNLL: also the lines between records; Parquet:
      every column of a row.
  """
  if raw_file.file_format == "parquet":
    with _open_parquet(raw_file) as f:
      yield from parquet.read_items(f, task, raw_file.fields, need_labels, all_columns=keep_skipped)
    return
  use_tabs = raw_file.file_format != "conll" or has_tabs(raw_file)
  with _open(raw_file) as f:
    start = files.skip_bom(f)
    yield from reader.read_items(
        f, raw_file.file_format, task, max_record_bytes=raw_file.max_record_bytes, start=start,
        need_labels=need_labels, label_column=raw_file.label_column, use_tabs=use_tabs, keep_skipped=keep_skipped,
        fields=raw_file.fields)


class _SeekableGFile(io.RawIOBase):
  """tf.io.gfile.GFile as a seekable io stream (pyarrow reads Parquet from one)."""

  def __init__(self, path: str):
    super().__init__()
    self._file = tf.io.gfile.GFile(path, "rb")

  def readable(self):
    return True

  def seekable(self):
    return True

  def readinto(self, buffer):
    data = self._file.read(len(buffer))
    buffer[:len(data)] = data
    return len(data)

  def seek(self, offset, whence=io.SEEK_SET):
    self._file.seek(offset, whence)
    return self._file.tell()

  def tell(self):
    return self._file.tell()

  def close(self):
    self._file.close()
    super().close()


def _open_parquet(raw_file: RawFile):
  if not tf.io.gfile.exists(raw_file.path) or tf.io.gfile.isdir(raw_file.path):
    raise UsageError(f"--input {raw_file.path}: no such file")
  return io.BufferedReader(_SeekableGFile(raw_file.path), 1 << 20)


def parquet_schema(raw_file: RawFile):
  """The Arrow schema of a Parquet --input (a writer writes its rows back with predictions)."""
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
  with _open_parquet(raw_file) as f:
    return pq.ParquetFile(f).schema_arrow


def has_bom(raw_file: RawFile) -> bool:
  """Whether the file starts with a UTF-8 byte-order mark (a writer writing it back keeps it)."""
  with _open(raw_file) as f:
    return files.skip_bom(f) > 0


def characters(record: records.Record) -> int:
  """Characters of a record's text; given tokens count as joined by single spaces."""
  return len(record.text) if record.text else len(" ".join(record.tokens))


def raw_batch(batch: Sequence[records.Record], task: str, with_labels: bool) -> dict:
  """Records → the inputs of the export's `raw` signature (DESIGN: exactly one of text and
  tokens is non-empty per record). Without labels, each token gets a placeholder label, so
  the transform still marks which pieces start a word (gold_ids != 0)."""
  width = max([len(record.tokens) for record in batch] + [1])
  tokens = np.full([len(batch), width], "", dtype=object)
  labels = np.full([len(batch), width], "", dtype=object)
  for row, record in enumerate(batch):
    tokens[row, :len(record.tokens)] = record.tokens
    labels[row, :len(record.tokens)] = record.labels if with_labels else [contract.UNK_TOKEN] * len(record.tokens)
  inputs = {"text": tf.constant([record.text for record in batch], tf.string),
            "tokens": tf.constant(tokens.astype(str) if tokens.size else tokens, tf.string),
            "token_count": tf.constant([len(record.tokens) for record in batch], tf.int64)}
  if task == "tag":
    inputs["labels"] = tf.constant(labels.astype(str), tf.string)
  elif task == "classify":
    inputs["label"] = tf.constant([record.label if with_labels else contract.UNK_TOKEN for record in batch],
                                  tf.string)
  return inputs
