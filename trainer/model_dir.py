"""MODEL_DIR's own files: model.json (what the checkpoints are a model of), the data check's
stamp, best.json with the best-so-far checkpoint, and metrics.json, each written atomically.
"""

import json
import logging
import os
from typing import List, Optional, Union

import keras
import tensorflow as tf

import contract
from trainer import config as config_lib
from trainer import entities
from trainer import metrics as metrics_lib
from trainer.config import TrainerConfig

METRICS_FILE = config_lib.METRICS_FILE
MODEL_FILE = config_lib.MODEL_FILE
DATA_CHECK_FILE = "data_check.json"  # which data the shard counts were checked for


class ModelDirError(ValueError):
  """A MODEL_DIR whose checkpoints are of another model: resuming would fail or mislead."""


# What a model.json written before a key existed means by its absence.
_ABSENT_MEANS = {"crf": False, "tag_scheme": "none"}


def model_description(config: TrainerConfig, metadata: Union[dict, contract.Metadata],
                      tag_scheme: str = "none") -> dict:
  """The settings that fix the checkpoint's variables and what its outputs mean (the
  resolved tag scheme): a rerun must agree on all of them."""
  metadata = contract.Metadata.of(metadata)
  description = {"task": metadata.task, "vocab_size": metadata.vocab_size, "num_classes": metadata.num_classes,
                 "cell": config.cell, "bidirectional": config.bidirectional, "num_layers": config.num_layers,
                 "embedding_dim": config.embedding_dim, "hidden": config.hidden, "crf": config.crf,
                 "tag_scheme": tag_scheme}
  # Only where used: a model dir of a word-only model (or one from before these) keeps its description.
  char_vocab_size = config.char_vocab_size(metadata)
  if char_vocab_size:
    description["chars"] = {"vocab_size": char_vocab_size, "embedding_dim": config.char_embedding_dim,
                            "features": config.char_features, "encoder": config.char_encoder}
  if config.tie_embeddings and metadata.task == "lm":
    description["tie_embeddings"] = True
  return description


def token_counts(config: TrainerConfig, metadata: contract.Metadata) -> Optional[List[int]]:
  """The data's train count per token id, for --word_dropout; None without it, or (warned)
  where the pipeline wrote no counts (WordPiece pieces, outputs from before them)."""
  if config.word_dropout <= 0:
    return None
  path = metadata.vocab_counts_path(config.data_dir)
  if path is None or not tf.io.gfile.exists(path):
    logging.warning("--word_dropout %g is off: %s has no %s (the pipeline counts word vocabularies only)",
                    config.word_dropout, config.data_dir, contract.VOCAB_COUNTS_FILE)
    return None
  counts = contract.read_vocab_counts(path)
  if len(counts) != metadata.vocab_size:
    raise contract.DataDirError(f"{path}: {len(counts)} counts for a vocabulary of {metadata.vocab_size}; "
                                "rerun pipeline.preprocess --overwrite")
  return counts


def tag_scheme(config: TrainerConfig, metadata: contract.Metadata, recorded: Optional[dict]) -> str:
  """The tag scheme of this run: model.json's when resuming with --tag_scheme auto (no
  second pass over the data), else --tag_scheme resolved (trainer/entities.py `resolve`).

  Raises:
    entities.SchemeError: --tag_scheme names a chunk scheme that labels.txt does not fit.
  """
  if metadata.task != "tag":
    return "none"
  if recorded is not None and config.tag_scheme == "auto":
    return recorded["tag_scheme"]
  labels = contract.read_vocab(metadata.labels_path(config.data_dir))
  train_paths = contract.shard_paths(config.data_dir, metadata.raw, "train")
  try:
    return entities.resolve(config.tag_scheme, labels, train_paths, metadata.compression)
  except tf.errors.DataLossError as error:
    where = contract.find_corrupt_record(train_paths, metadata.compression)
    raise contract.DataDirError(f"{where or error.message}; rerun pipeline.preprocess --overwrite") from None


def check_model_dir(config: TrainerConfig, metadata: Union[dict, contract.Metadata], write: bool) -> str:
  """Refuses a MODEL_DIR trained with other settings; records ours on a first run.

  model.json also records the vocabularies' fingerprints, so trainer.evaluate can refuse
  data whose ids mean other tokens, the data's tokenizer (metadata.json's), so
  trainer.predict --generate can join WordPiece pieces into words, the tag scheme, so
  that evaluate, predict and the export read the labels as training did, and the raw
  files' label column and field names (evaluate's and predict's defaults).

  Returns:
    The tag scheme (`tag_scheme`): "iob1", "iob2", "bioes" or "none".
  """
  path = os.path.join(config.model_dir, MODEL_FILE)
  metadata = contract.Metadata.of(metadata)
  theirs = None
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as f:
      theirs = {**_ABSENT_MEANS, **json.load(f)}
  scheme = tag_scheme(config, metadata, theirs)
  ours = model_description(config, metadata, scheme)
  fingerprints = config_lib.vocab_fingerprints(config.data_dir, metadata)
  if theirs is not None:
    different = {k: (theirs.get(k), v) for k, v in ours.items() if theirs.get(k) != v}
    # Keys written only where used: a char encoder or tied embeddings that the flags now drop.
    different.update({k: (theirs[k], None) for k in ("chars", "tie_embeddings") if k in theirs and k not in ours})
    if theirs.get("fingerprints", fingerprints) != fingerprints:
      different["vocabulary"] = ("of the first run", "another")
    if different:
      described = ", ".join(f"{k} {old} (now {new})" for k, (old, new) in sorted(different.items()))
      raise ModelDirError(f"--model_dir {config.model_dir} holds a model trained with {described}; "
                          "use a new --model_dir, or the same data and model flags to resume")
  elif write:
    tf.io.gfile.makedirs(config.model_dir)
    tokenizer = {"type": metadata.tokenizer or "word", "suffix_indicator": metadata.wordpiece_suffix}
    # Others may read it at any moment: never half-written. `label_column`, `fields`: the
    # raw files' label column and field names, trainer.evaluate's and trainer.predict's defaults.
    fields = {name: metadata.options[f"{name}_field"] for name in ("text", "tokens", "labels", "label")
              if f"{name}_field" in metadata.options}
    write_json(path, {**ours, "fingerprints": fingerprints, "tokenizer": tokenizer,
                      "label_column": metadata.options.get("label_column"), "eos_id": metadata.eos_id,
                      "fields": fields})
  return scheme


def check_data(config: TrainerConfig, metadata: Union[dict, contract.Metadata], write: bool) -> Optional[int]:
  """Counts every shard's records against metadata.json, once per MODEL_DIR and data.

  A rerun (resuming after preemption) of the same data skips the count; shard sizes are
  still checked on every run, and CRCs whenever records are read.

  Returns:
    The records counted, or None when this data was already checked for this MODEL_DIR.

  Raises:
    contract.DataDirError: a count disagrees or a shard is damaged.
  """
  metadata = contract.Metadata.of(metadata)
  stamp = {"data_dir": config.data_dir, "created": metadata.raw.get("created"),
           "shards": {shard["file"]: shard.get("bytes") for split in contract.TRAINING_SPLITS
                      for shard in metadata.shards(split)}}
  path = os.path.join(config.model_dir, DATA_CHECK_FILE)
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as f:
      if json.load(f) == stamp:
        return None
  total = contract.check_counts(config.data_dir, metadata.raw, contract.TRAINING_SPLITS)
  if write:
    tf.io.gfile.makedirs(config.model_dir)
    write_json(path, stamp)
  return total


class BestCheckpoint:
  """The best-so-far step's checkpoint in its own directory, and best.json naming it.

  best.json ({"best_step", "best", "checkpoint", "evals_without_improvement",
  "last_eval_step"}) is written atomically after the checkpoint it names, and the previous
  best checkpoint is deleted only after that: a run killed at any moment resumes with a
  best.json whose checkpoint exists.
  """

  def __init__(self, directory: str, checkpoint: tf.train.Checkpoint, task: str):
    self.directory = directory
    self.checkpoint = checkpoint
    self.task = task
    self.step: Optional[int] = None
    self.metrics: Optional[dict] = None
    self.prefix: Optional[str] = None
    self.evals_without_improvement = 0
    self.last_eval_step = -1

  @property
  def path(self) -> str:
    return os.path.join(self.directory, config_lib.BEST_FILE)

  def load(self) -> None:
    if not tf.io.gfile.exists(self.path):
      return
    with tf.io.gfile.GFile(self.path) as f:
      state = json.load(f)
    self.step, self.metrics = state["best_step"], state["best"]
    self.prefix = os.path.join(self.directory, state["checkpoint"])
    self.evals_without_improvement = state["evals_without_improvement"]
    self.last_eval_step = state["last_eval_step"]
    logging.info("Best so far: step %d, %s", self.step, self.metrics)

  def start_over(self) -> None:
    """Forgets the best so far (scored on another eval split), keeping its checkpoint until
    a new best replaces it: on new data, the first evaluation is the best."""
    self.step, self.metrics, self.evals_without_improvement = None, None, 0

  def update(self, step: int, results: dict) -> bool:
    """Records an evaluation of `step`; checkpoints it if it is the best so far."""
    if step <= self.last_eval_step:  # evaluated before a kill, resumed from an older checkpoint
      return step == self.step
    improved = metrics_lib.better(results, self.metrics, self.task)
    old_prefix = self.prefix
    if improved:
      tf.io.gfile.makedirs(self.directory)
      self.prefix = self.checkpoint.write(os.path.join(self.directory, f"ckpt-{step}"))
      self.step, self.metrics, self.evals_without_improvement = step, dict(results), 0
    else:
      self.evals_without_improvement += 1
    self.last_eval_step = step
    write_json(self.path, {"best_step": self.step, "best": self.metrics, "checkpoint": os.path.basename(self.prefix),
                           "evals_without_improvement": self.evals_without_improvement,
                           "last_eval_step": step})
    if improved and old_prefix and old_prefix != self.prefix:
      for stale in tf.io.gfile.glob(old_prefix + ".*"):
        tf.io.gfile.remove(stale)
    return improved

  def restore_model(self, model: keras.Model) -> None:
    model_variables = {variable.path: variable.value for variable in model.variables}
    tf.train.Checkpoint(model=model, variables=model_variables).read(self.prefix).expect_partial()


def write_json(path: str, value: dict) -> None:
  """Writes to a temporary name and renames: a reader sees the old file or the new one."""
  temp_path = f"{path}.tmp-{os.getpid()}"
  with tf.io.gfile.GFile(temp_path, "w") as f:
    json.dump(value, f, indent=1, sort_keys=True)
  tf.io.gfile.rename(temp_path, path, overwrite=True)


def write_metrics(model_dir: str, metrics: dict) -> str:
  """MODEL_DIR/metrics.json, written atomically."""
  path = os.path.join(model_dir, METRICS_FILE)
  write_json(path, metrics)
  return path
