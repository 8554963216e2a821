"""A tag model's output: its loss, its decoded tags and its entity counts (`TagDecoder`).

Three kinds, from the tag scheme (trainer/entities.py) and `--crf`:

| scheme    | --crf | loss                                 | tags                                        |
| --------- | ----- | ------------------------------------ | ------------------------------------------- |
| none      | no    | per-token softmax cross-entropy       | argmax per token                            |
| a chunk   | no    | per-token softmax cross-entropy       | Viterbi over log-softmax, scheme's mask     |
| any       | yes   | the sequence's negative log-likelihood | Viterbi over logits + learned transitions   |

The mask (trainer/entities.py `Tables.allowed`) forbids what the scheme forbids (IOB2:
O → I-X; BIOES: ending on B-X, …), and <pad> always: a decoded sequence is always
well-formed. The CRF's transition, start and end scores are weights of the model
(`Transitions`, a layer that passes the logits through), so checkpoints and the export
hold them. Its loss is exact under padding and across replicas as trainer/loss.py's: a sum
over sequences, with the count (real words, or sequences) that the caller all-reduces.

Positions without a target (padding, WordPiece continuation pieces, filler rows) are no
words: each row's words are left-aligned first (trainer/decode.py `compact`), so
transitions go from word to word.
"""

from typing import Dict, Optional, Tuple

import keras
import tensorflow as tf

import contract
from trainer import decode
from trainer import entities
from trainer import loss as loss_lib

LAYER = "crf"  # the Transitions layer's name in the model


@keras.saving.register_keras_serializable(package="trainer")
class Transitions(keras.layers.Layer):
  """A CRF's learned scores: `transitions` [L, L] (previous label, label), `start` [L],
  `end` [L], from 0. The logits pass through unchanged: TagDecoder reads the scores."""

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    self.supports_masking = True

  def build(self, input_shape):
    labels = input_shape[-1]
    self.transitions = self.add_weight(name="transitions", shape=(labels, labels), initializer="zeros")
    self.start = self.add_weight(name="start", shape=(labels,), initializer="zeros")
    self.end = self.add_weight(name="end", shape=(labels,), initializer="zeros")

  def call(self, logits):
    return logits

  def compute_mask(self, inputs, mask=None):
    return mask


class TagDecoder:
  """Loss, decoding and eval sums of a tag model (see the module's table)."""

  def __init__(self, tables: entities.Tables, transitions: Optional[Transitions] = None):
    self.tables = tables
    self.transitions = transitions

  @property
  def viterbi(self) -> bool:
    """Whether tags come from Viterbi (a chunk scheme or a CRF), not from argmax."""
    return self.tables.entities or self.transitions is not None

  def _scores(self, forbidden: float) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(transitions, start, end) with `forbidden` where the mask forbids."""
    masks = (self.tables.allowed, self.tables.allowed_start, self.tables.allowed_end)
    if self.transitions is None:  # the scheme's mask alone
      learned = [tf.zeros(mask.shape) for mask in masks]
    else:
      layer = self.transitions
      learned = [tf.convert_to_tensor(weight) for weight in (layer.transitions, layer.start, layer.end)]
    return tuple(tf.where(tf.constant(mask), score, forbidden) for mask, score in zip(masks, learned))

  def _emissions(self, logits: tf.Tensor, order: tf.Tensor) -> tf.Tensor:
    emissions = tf.gather(tf.cast(logits, tf.float32), order, batch_dims=1)
    return emissions if self.transitions is not None else tf.nn.log_softmax(emissions)

  @tf.autograph.experimental.do_not_convert  # plain TF: nothing for AutoGraph to rewrite, and it is slow
  def loss_sums(self, logits: tf.Tensor, target: tf.Tensor, mask: tf.Tensor, reduction: str):
    """(sum of losses, count to divide by), as trainer/loss.py `loss_sums`: the CRF's
    negative log-likelihood per sequence, summed; `token` divides by real words, `sequence`
    averages each sequence's per-word value over sequences with words."""
    if self.transitions is None:
      return loss_lib.loss_sums(logits, target, mask, reduction)
    order, lengths = decode.compact(mask > 0)
    gold = tf.gather(target, order, batch_dims=1)
    if self.tables.entities:  # the well-formed path with the same chunks (an <unk> gold label: O)
      gold = entities.canonical(self.tables, gold, lengths)
    emissions = self._emissions(logits, order)
    transitions, start, end = self._scores(decode.FORBIDDEN)
    nll = (decode.log_partition(emissions, transitions, start, end, lengths)
           - decode.path_score(emissions, gold, transitions, start, end, lengths))
    words = tf.cast(lengths, tf.float32)
    if reduction == "token":
      return tf.reduce_sum(nll), tf.reduce_sum(words)
    return tf.reduce_sum(tf.math.divide_no_nan(nll, words)), tf.reduce_sum(tf.cast(lengths > 0, tf.float32))

  def _decode_compact(self, logits: tf.Tensor, order: tf.Tensor, lengths: tf.Tensor) -> tf.Tensor:
    transitions, start, end = self._scores(-float("inf"))
    tags, _ = decode.viterbi(self._emissions(logits, order), transitions, start, end, lengths)
    return tf.cast(tags, tf.int64)

  @tf.autograph.experimental.do_not_convert  # plain TF: nothing for AutoGraph to rewrite, and it is slow
  def decode(self, logits: tf.Tensor, words: tf.Tensor) -> tf.Tensor:
    """[B, T] label ids (int64): a tag at each word (`words`, [B, T] bool), <pad> elsewhere."""
    if not self.viterbi:
      return tf.where(words, tf.argmax(logits, axis=-1, output_type=tf.int64), contract.PAD_ID)
    order, lengths = decode.compact(words)
    return decode.expand(self._decode_compact(logits, order, lengths), words, tf.constant(contract.PAD_ID, tf.int64))

  @tf.autograph.experimental.do_not_convert  # plain TF: nothing for AutoGraph to rewrite, and it is slow
  def eval_sums(self, logits: tf.Tensor, target: tf.Tensor, mask: tf.Tensor) -> Dict[str, tf.Tensor]:
    """`correct` (decoded tags equal to the target, weighted by `mask`) and the chunk sums
    (entities.SUM_KEYS; zeros without a chunk scheme)."""
    words = mask > 0
    if not self.viterbi:
      predicted = self.decode(logits, words)
      sums = {key: tf.constant(0.0) for key in entities.SUM_KEYS}
    else:
      order, lengths = decode.compact(words)
      compact_tags = self._decode_compact(logits, order, lengths)
      predicted = decode.expand(compact_tags, words, tf.constant(contract.PAD_ID, tf.int64))
      sums = ({key: tf.constant(0.0) for key in entities.SUM_KEYS} if not self.tables.entities else
              entities.chunk_sums(self.tables, tf.gather(target, order, batch_dims=1), compact_tags, lengths))
    sums["correct"] = tf.reduce_sum(tf.cast(tf.equal(predicted, tf.cast(target, tf.int64)), tf.float32) * mask)
    return sums


def tag_decoder(labels, scheme: str, model: keras.Model) -> TagDecoder:
  """The decoder of a tag model: labels.txt's entries, the resolved scheme, and the model
  (its Transitions layer, if it has one: --crf)."""
  names = [layer.name for layer in model.layers]
  transitions = model.get_layer(LAYER) if LAYER in names else None
  return TagDecoder(entities.build_tables(labels, scheme), transitions)
