"""What trainer.evaluate and trainer.predict share: MODEL_DIR's export, and raw files read
with the pipeline's record rules (records.py) and batched for the export's `raw` signature.

No Beam, no TFT, no Keras: the export holds the model and the pipeline's transform.
"""

import gzip
import json
import os
from typing import Iterator, List, NamedTuple, Optional, Sequence

import numpy as np
import tensorflow as tf

import contract
import records
from trainer.config import EXPORT_DIR, MODEL_FILE

BOM = b"\xef\xbb\xbf"


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

class Item(NamedTuple):
  """One record of a raw file, in file order: `record` is None for a bad or filtered one."""
  record: Optional[records.Record]
  problem: str  # "" for a good record, else the BadRecord or Filtered reason
  filtered: bool
  lines: Sequence[str]  # the record's lines as read (CoNLL: its rows), without line ends
  skipped: Sequence[str] = ()  # CoNLL lines before it that belong to no record (-DOCSTART-, comments, blanks)


def _open(path: str):
  if not tf.io.gfile.exists(path) or tf.io.gfile.isdir(path):
    raise UsageError(f"--input {path}: no such file")
  handle = tf.io.gfile.GFile(path, "rb")
  return gzip.GzipFile(fileobj=handle) if path.endswith(".gz") else handle


def _lines(path: str) -> Iterator[bytes]:
  """The file's lines without their ends (\\n or \\r\\n), the BOM left out, lazily."""
  with _open(path) as f:
    first = True
    for line in f:
      if first:
        line, first = line[len(BOM):] if line.startswith(BOM) else line, False
      yield line.rstrip(b"\n").rstrip(b"\r")


def _show(line: bytes) -> str:
  return line.decode("utf-8", errors="replace")


def has_tabs(path: str) -> bool:
  """CoNLL columns split on tabs if the file has any, else on runs of spaces (DESIGN.md)."""
  with _open(path) as f:
    while chunk := f.read(1 << 20):
      if b"\t" in chunk:
        return True
  return False


def _one(parse, raw: bytes, lines: List[str], task: str) -> Item:
  try:
    return Item(parse(raw, task), "", False, lines)
  except records.Filtered as filtered:
    return Item(None, filtered.reason, True, lines)
  except records.BadRecord as bad:
    return Item(None, bad.reason, False, lines)


def read_items(path: str, file_format: str, task: str, need_labels: bool) -> Iterator[Item]:
  """The records of a raw file by the pipeline's rules, one Item each, in order, lazily.

  Args:
    path: the file (`.gz` read transparently).
    file_format: text, jsonl or conll.
    task: the model's task (which fields a record needs).
    need_labels: CoNLL rows need a label column (evaluate); without it (predict) a row's
      first column is its token and any others are kept as they are.
  """
  if file_format in ("text", "jsonl"):
    parse = records.parse_text_line if file_format == "text" else records.parse_json_line
    if file_format == "jsonl" and task == "tag" and not need_labels:
      parse = _parse_json_tokens
    for line in _lines(path):
      yield _one(parse, line, [_show(line)], task)
    return
  use_tabs = has_tabs(path)
  rows: List[bytes] = []
  skipped: List[str] = []
  for line in _lines(path):
    if records.is_blank(line) or records.is_conll_skip_line(line):
      if rows:
        yield _conll_item(rows, use_tabs, task, need_labels, skipped)
        rows, skipped = [], []
      skipped.append(_show(line))
    else:
      rows.append(line)
  if rows:
    yield _conll_item(rows, use_tabs, task, need_labels, skipped)
    skipped = []
  if skipped:
    yield Item(None, "", False, [], skipped)  # trailing lines that belong to no record


def _conll_item(rows: List[bytes], use_tabs: bool, task: str, need_labels: bool, skipped: List[str]) -> Item:
  shown = [_show(row) for row in rows]
  try:
    decoded = [records.decode(row) for row in rows]
    if need_labels:
      record = records.parse_conll_block(decoded, use_tabs, task)
    else:
      tokens = [records.split_conll_row(row, use_tabs)[0] for row in decoded]
      record = records.Record(tokens=records.check_tokens(tokens, "tokens"))
    return Item(record, "", False, shown, skipped)
  except records.BadRecord as bad:
    return Item(None, bad.reason, False, shown, skipped)


def _parse_json_tokens(raw: bytes, task: str) -> records.Record:
  """A tag record to predict: `tokens` (labels not needed); `text` is tokenized by the model."""
  del task
  return records.parse_json_line(raw, "lm")  # lm's rule: `tokens` or `text`, no labels


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
