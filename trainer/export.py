"""export/: a SavedModel that takes raw text (or given tokens) and returns predictions.

The pipeline's `transform_fn/` is loaded with `tf.saved_model.load` (never by importing
TFT, which would switch Keras to the legacy package) and runs inside the serving
functions, so raw text is tokenized and mapped to ids exactly as the shards were.

Signatures:
  serving_default  text [batch] → by task:
      tag:      token_ids [batch, time], label_ids [batch, time], labels [batch, time] strings
                ("" past the length), length [batch]; the labels decoded as training's eval
                decodes them (trainer/crf.py: Viterbi for a chunk scheme or --crf)
      classify: label_id [batch], label [batch] string, probabilities [batch, classes], token_ids
      lm:       log_likelihood [batch] (sum over predicted tokens, the end of the text included),
                predicted_tokens [batch] int64, length [batch], token_ids
  raw  the pipeline's raw record, batched: text [batch] (or "" where tokens are given),
      tokens [batch, time] strings padded with "", token_count [batch] (0 where text is given),
      and the gold labels: labels [batch, time] (tag) or label [batch] (classify), any
      non-empty string where unknown. Returns the serving_default outputs of its task, plus
      gold_ids (tag: [batch, time] the transformed labels, 0 on a word's continuation pieces;
      classify: [batch], and label_names [classes]) and the batch's eval sums (trainer.metrics.eval_sums: loss_sum,
      count, nll_sum, correct, targets, examples, tokens, chunks_correct, chunks_gold,
      chunks_predicted) against the gold labels.
  score  a batch of the shards' records as trainer.data makes them (token_ids, length,
      weight, label_ids for tag/classify, and char_ids [batch, time, chars] for a model with a
      char encoder) → its eval sums, exactly as the training run's evaluation computes them.
  next_token  (lm) token_ids [batch, time], length [batch] → logits [batch, vocab] of the
      token after each row's last one (EOS_ID: the text ends), and tokens [batch, time]: the
      ids as vocab.txt's strings.
"""

import os
from typing import List, Optional

import keras
import numpy as np
import tensorflow as tf

import contract
from trainer import crf
from trainer import metrics as metrics_lib
from trainer.config import EXPORT_DIR, TrainerConfig
from trainer.data import WEIGHT
from trainer.model import build_model, model_inputs, takes_chars


class ServingModule(tf.Module):
  """Raw text → transform_fn → model → predictions, as tf.functions."""

  def __init__(self, model: keras.Model, transform_dir: str, task: str, labels: List[str],
               raw_feature_names: List[str], loss_reduction: str = "token", tokens: Optional[List[str]] = None,
               eos_id: Optional[int] = None, decoder: Optional[crf.TagDecoder] = None,
               vocab_chars: Optional[np.ndarray] = None):
    super().__init__()
    self.eos_id = eos_id  # lm: predicted after each sequence's last token (contract.lm_targets)
    self.decoder = decoder  # tag: how logits become labels (trainer/crf.py)
    self.token_names = tf.constant(tokens or [""])
    self.model = model
    self.transform = contract.load_saved_model(transform_dir)
    self.task = task
    self.loss_reduction = loss_reduction
    self.label_names = tf.constant(labels or [""])
    self.raw_feature_names = raw_feature_names
    self.takes_chars = takes_chars(model)
    # next_token (lm) gets ids only: a char model looks up each vocabulary entry's chars
    # (`vocab_char_table`). The function is traced for every task, as saving traces each
    # tf.function with a signature: a table of one empty row stands in.
    self.vocab_chars = tf.constant(vocab_chars if vocab_chars is not None else np.zeros([1, 1], np.int64))
    self.serve = tf.function(self._serve, input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    raw_spec = {"text": tf.TensorSpec([None], tf.string, name="text"),
                "tokens": tf.TensorSpec([None, None], tf.string, name="tokens"),
                "token_count": tf.TensorSpec([None], tf.int64, name="token_count")}
    score_spec = {"token_ids": tf.TensorSpec([None, None], tf.int64, name="token_ids"),
                  "length": tf.TensorSpec([None], tf.int64, name="length"),
                  "weight": tf.TensorSpec([None], tf.float32, name="weight")}
    if self.takes_chars:
      score_spec["char_ids"] = tf.TensorSpec([None, None, None], tf.int64, name="char_ids")
    if task == "tag":
      raw_spec["labels"] = tf.TensorSpec([None, None], tf.string, name="labels")
      score_spec["label_ids"] = tf.TensorSpec([None, None], tf.int64, name="label_ids")
    elif task == "classify":
      raw_spec["label"] = tf.TensorSpec([None], tf.string, name="label")
      score_spec["label_ids"] = tf.TensorSpec([None], tf.int64, name="label_ids")
    self.raw = tf.function(self._raw, input_signature=[raw_spec])
    self.score = tf.function(self._score, input_signature=[score_spec])
    self.next_token = tf.function(self._next_token, input_signature=[
        tf.TensorSpec([None, None], tf.int64, name="token_ids"), tf.TensorSpec([None], tf.int64, name="length")])

  def signatures(self) -> dict:
    signatures = {"serving_default": self.serve.get_concrete_function(),
                  "raw": self.raw.get_concrete_function(), "score": self.score.get_concrete_function()}
    if self.task == "lm":
      signatures["next_token"] = self.next_token.get_concrete_function()
    return signatures

  def _model(self, token_ids: tf.Tensor, char_ids: Optional[tf.Tensor] = None) -> tf.Tensor:
    """The model's logits (inference) for these ids (an lm's after its end id), given the
    chars where it takes them."""
    batch = {contract.TOKENS: token_ids, **({contract.CHARS: char_ids} if self.takes_chars else {})}
    return self.model(model_inputs(self.model, batch, self.task, self.eos_id), training=False)

  def _raw_features(self, text: tf.Tensor) -> dict:
    batch = tf.shape(text, out_type=tf.int64)[0]
    nothing = tf.RaggedTensor.from_row_lengths(tf.zeros([0], tf.string), tf.zeros([batch], tf.int64))
    features = {"text": text, "tokens": nothing}
    if "labels" in self.raw_feature_names:
      features["labels"] = nothing
    if "label" in self.raw_feature_names:
      features["label"] = tf.fill([batch], "")
    return features

  def _predict(self, transformed: dict):
    """transform_fn's output → (token_ids [batch, width], logits, the serving outputs)."""
    ids = transformed[contract.TOKENS]
    length = transformed[contract.LENGTH]
    width = tf.maximum(tf.reduce_max(tf.concat([ids.row_lengths(), [1]], 0)), 1)  # "" still runs
    token_ids = ids.to_tensor(default_value=contract.PAD_ID, shape=tf.stack([tf.shape(length, tf.int64)[0], width]))
    char_ids = None
    if self.takes_chars:  # [batch, (tokens), (chars)] → [batch, width, the longest token]
      chars = transformed[contract.CHARS]
      char_width = tf.reduce_max(tf.concat([chars.values.row_lengths(), [1]], 0))
      char_ids = chars.to_tensor(contract.PAD_ID, shape=tf.concat([tf.shape(token_ids, tf.int64), [char_width]], 0))
    logits = self._model(token_ids, char_ids)
    if self.task == "tag":
      words = token_ids != contract.PAD_ID
      if "word_start" in transformed:  # wordpiece: a word's label is its first piece's
        words = transformed["word_start"].to_tensor(0, shape=tf.shape(token_ids, out_type=tf.int64)) > 0
      if self.decoder is not None:
        label_ids = self.decoder.decode(logits, words)
      else:
        label_ids = tf.where(words, tf.argmax(logits, axis=-1, output_type=tf.int64), contract.PAD_ID)
      labels = tf.where(label_ids != contract.PAD_ID, tf.gather(self.label_names, label_ids), "")
      if "word_start" in transformed:  # wordpiece: one label per word, its first piece's
        first_pieces = transformed["word_start"] > 0
        label_ids = tf.ragged.boolean_mask(tf.RaggedTensor.from_tensor(label_ids, lengths=length), first_pieces)
        labels = tf.ragged.boolean_mask(tf.RaggedTensor.from_tensor(labels, lengths=length), first_pieces)
        length = label_ids.row_lengths()
        label_ids, labels = label_ids.to_tensor(contract.PAD_ID), labels.to_tensor("")
      outputs = {"label_ids": label_ids, "labels": labels, "token_ids": token_ids, "length": length}
    elif self.task == "classify":
      label_id = tf.argmax(logits, axis=-1, output_type=tf.int64)
      outputs = {"label_id": label_id, "label": tf.gather(self.label_names, label_id),
                 "probabilities": tf.nn.softmax(logits), "token_ids": token_ids}
    else:
      targets = contract.lm_targets(token_ids, length, self.eos_id)
      mask = tf.cast(targets != contract.PAD_ID, tf.float32)
      log_probs = -tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
      outputs = {"log_likelihood": tf.reduce_sum(log_probs * mask, axis=1),
                 "predicted_tokens": tf.cast(tf.reduce_sum(mask, axis=1), tf.int64), "length": length,
                 "token_ids": token_ids}
    return token_ids, logits, outputs

  def _serve(self, text):
    return self._predict(self.transform.transform_fn(self._raw_features(text)))[2]

  def _raw(self, features):
    tokens = tf.RaggedTensor.from_tensor(features["tokens"], lengths=features["token_count"])
    raw = {"text": features["text"], "tokens": tokens}
    if self.task == "tag":
      raw["labels"] = tf.RaggedTensor.from_tensor(features["labels"], lengths=features["token_count"])
    elif self.task == "classify":
      raw["label"] = features["label"]
    transformed = self.transform.transform_fn(raw)
    token_ids, logits, outputs = self._predict(transformed)
    batch = {contract.TOKENS: token_ids, contract.LENGTH: transformed[contract.LENGTH],
             WEIGHT: tf.ones(tf.shape(token_ids)[:1], tf.float32)}
    if self.task == "tag":
      batch[contract.LABELS] = transformed[contract.LABELS].to_tensor(
          default_value=contract.PAD_ID, shape=tf.shape(token_ids, out_type=tf.int64))
      outputs["gold_ids"] = batch[contract.LABELS]
    elif self.task == "classify":
      batch[contract.LABEL] = transformed[contract.LABEL]
      outputs["gold_ids"] = batch[contract.LABEL]
      outputs["label_names"] = self.label_names
    outputs.update(metrics_lib.eval_sums(logits, batch, self.task, self.loss_reduction, self.eos_id, self.decoder))
    return outputs

  def _score(self, features):
    batch = {contract.TOKENS: features["token_ids"], contract.LENGTH: features["length"],
             WEIGHT: features["weight"]}
    if self.task == "tag":
      batch[contract.LABELS] = features["label_ids"]
    elif self.task == "classify":
      batch[contract.LABEL] = features["label_ids"]
    logits = self._model(features["token_ids"], features.get("char_ids"))
    return metrics_lib.eval_sums(logits, batch, self.task, self.loss_reduction, self.eos_id, self.decoder)

  def _next_token(self, token_ids, length):
    char_ids = tf.gather(self.vocab_chars, tf.minimum(token_ids, tf.shape(self.vocab_chars, tf.int64)[0] - 1))
    logits = self._model(token_ids, char_ids if self.takes_chars else None)
    # The logits after each row's last token: at input position `length` after the end id
    # (position 0, the end id itself, for an empty row), else at length - 1.
    last = length if self.eos_id is not None else tf.maximum(length - 1, 0)
    return {"logits": tf.gather(logits, last, axis=1, batch_dims=1),
            "tokens": tf.gather(self.token_names, token_ids)}


def vocab_char_table(metadata: contract.Metadata, data_dir: str) -> np.ndarray:
  """[vocab, chars]: the CHARS ids of each vocabulary entry as a token of the records
  (a WordPiece continuation piece without its `##`), for next_token; the reserved ids' rows
  empty (</s> is read with none, as in training: model.model_inputs)."""
  index = {char: i for i, char in enumerate(contract.read_vocab(metadata.chars_path(data_dir)))
           if i >= contract.NUM_RESERVED}
  suffix = metadata.wordpiece_suffix
  num_reserved = contract.num_reserved(metadata.task)
  rows = [[]] * num_reserved + [[index.get(char, contract.UNK_ID) for char in contract.kept_chars(
      entry[len(suffix):] if suffix and entry.startswith(suffix) else entry, metadata.max_token_chars)]
                 for entry in contract.read_vocab(metadata.vocab_path(data_dir))[num_reserved:]]
  table = np.zeros([len(rows), max(map(len, rows), default=1) or 1], np.int64)
  for i, row in enumerate(rows):
    table[i, :len(row)] = row
  return table


def export(config: TrainerConfig, metadata: contract.Metadata, trained: keras.Model) -> str:
  """Writes MODEL_DIR/export with a non-distributed copy of the trained weights."""
  model = build_model(config, metadata.task, metadata.vocab_size, metadata.num_classes,
                      config.char_vocab_size(metadata))  # no word dropout: it only acts in training
  model.set_weights(trained.get_weights())
  labels_path = metadata.labels_path(config.data_dir)
  labels = contract.read_vocab(labels_path) if labels_path else []
  # config.tag_scheme is the resolved scheme that model.json records (trainer.task).
  decoder = crf.tag_decoder(labels, config.tag_scheme, model) if metadata.task == "tag" else None
  lm_chars = metadata.task == "lm" and takes_chars(model)
  module = ServingModule(model, os.path.join(config.data_dir, contract.TRANSFORM_FN_DIR), metadata.task, labels,
                         contract.raw_columns(metadata.task), config.loss_reduction,
                         contract.read_vocab(metadata.vocab_path(config.data_dir)) if metadata.task == "lm" else None,
                         metadata.eos_id, decoder, vocab_char_table(metadata, config.data_dir) if lm_chars else None)
  path = os.path.join(config.model_dir, EXPORT_DIR)
  temp_path = path + ".tmp"
  if tf.io.gfile.exists(temp_path):
    tf.io.gfile.rmtree(temp_path)
  tf.saved_model.save(module, temp_path, signatures=module.signatures())
  if tf.io.gfile.exists(path):
    tf.io.gfile.rmtree(path)
  tf.io.gfile.rename(temp_path, path)
  return path
