"""export/: a SavedModel whose `serving_default` takes raw text and returns predictions.

The pipeline's `transform_fn/` is loaded with `tf.saved_model.load` (never by importing
TFT, which would switch Keras to the legacy package) and runs inside the serving
function, so raw text is tokenized and mapped to ids exactly as the shards were.

Outputs by task:
  tag:      token_ids [batch, time], label_ids [batch, time], labels [batch, time] strings
            ("" past the length), length [batch]; with a wordpiece transform_fn, labels,
            label_ids and length are per word (the label of each word's first piece)
  classify: label_id [batch], label [batch] string, probabilities [batch, classes]
  lm:       log_likelihood [batch] (sum over predicted tokens), predicted_tokens [batch] int64,
            length [batch]
"""

import os
from typing import List

import keras
import tensorflow as tf

import contract
from trainer.config import TrainerConfig
from trainer.model import build_model

EXPORT_DIR = "export"


class ServingModule(tf.Module):
  """Raw text → transform_fn → model → predictions, as one tf.function."""

  def __init__(self, model: keras.Model, transform_dir: str, task: str, labels: List[str],
               raw_feature_names: List[str]):
    super().__init__()
    self.model = model
    self.transform = contract.load_saved_model(transform_dir)
    self.task = task
    self.label_names = tf.constant(labels or [""])
    self.raw_feature_names = raw_feature_names
    self.serve = tf.function(self._serve, input_signature=[tf.TensorSpec([None], tf.string, name="text")])

  def _raw_features(self, text: tf.Tensor) -> dict:
    batch = tf.shape(text, out_type=tf.int64)[0]
    nothing = tf.RaggedTensor.from_row_lengths(tf.zeros([0], tf.string), tf.zeros([batch], tf.int64))
    features = {"text": text, "tokens": nothing}
    if "labels" in self.raw_feature_names:
      features["labels"] = nothing
    if "label" in self.raw_feature_names:
      features["label"] = tf.fill([batch], "")
    return features

  def _serve(self, text):
    transformed = self.transform.transform_fn(self._raw_features(text))
    ids = transformed[contract.TOKENS]
    length = transformed[contract.LENGTH]
    width = tf.maximum(tf.reduce_max(tf.concat([ids.row_lengths(), [1]], 0)), 1)  # "" still runs
    token_ids = ids.to_tensor(default_value=contract.PAD_ID, shape=tf.stack([tf.shape(length, tf.int64)[0], width]))
    logits = self.model(token_ids, training=False)
    if self.task == "tag":
      label_ids = tf.argmax(logits, axis=-1, output_type=tf.int64)
      label_ids = tf.where(token_ids != contract.PAD_ID, label_ids, contract.PAD_ID)
      labels = tf.where(label_ids != contract.PAD_ID, tf.gather(self.label_names, label_ids), "")
      if "word_start" in transformed:  # wordpiece: one label per word, its first piece's
        first_pieces = transformed["word_start"] > 0
        label_ids = tf.ragged.boolean_mask(tf.RaggedTensor.from_tensor(label_ids, lengths=length), first_pieces)
        labels = tf.ragged.boolean_mask(tf.RaggedTensor.from_tensor(labels, lengths=length), first_pieces)
        length = label_ids.row_lengths()
        label_ids, labels = label_ids.to_tensor(contract.PAD_ID), labels.to_tensor("")
      return {"label_ids": label_ids, "labels": labels, "token_ids": token_ids, "length": length}
    if self.task == "classify":
      label_id = tf.argmax(logits, axis=-1, output_type=tf.int64)
      return {"label_id": label_id, "label": tf.gather(self.label_names, label_id),
              "probabilities": tf.nn.softmax(logits)}
    targets = contract.lm_targets(token_ids)
    mask = tf.cast(targets != contract.PAD_ID, tf.float32)
    log_probs = -tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
    return {"log_likelihood": tf.reduce_sum(log_probs * mask, axis=1),
            "predicted_tokens": tf.cast(tf.reduce_sum(mask, axis=1), tf.int64), "length": length}


def export(config: TrainerConfig, metadata: dict, trained: keras.Model) -> str:
  """Writes MODEL_DIR/export with a non-distributed copy of the trained weights."""
  task = metadata["task"]
  vocab_size = metadata["vocab"]["size"]
  num_classes = vocab_size if task == "lm" else metadata["labels"]["size"]
  model = build_model(config, task, vocab_size, num_classes)
  model.set_weights(trained.get_weights())
  labels = []
  if task != "lm":
    labels = contract.read_vocab(os.path.join(config.data_dir, metadata["labels"]["file"]))
  module = ServingModule(model, os.path.join(config.data_dir, contract.TRANSFORM_FN_DIR), task, labels,
                         contract.raw_columns(task))
  path = os.path.join(config.model_dir, EXPORT_DIR)
  temp_path = path + ".tmp"
  if tf.io.gfile.exists(temp_path):
    tf.io.gfile.rmtree(temp_path)
  tf.saved_model.save(module, temp_path, signatures={"serving_default": module.serve.get_concrete_function()})
  if tf.io.gfile.exists(path):
    tf.io.gfile.rmtree(path)
  tf.io.gfile.rename(temp_path, path)
  return path
