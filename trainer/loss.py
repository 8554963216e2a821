"""The masked sequence loss, normalised by global counts so replicas and padding don't matter.

Each replica returns the *sum* of its losses and the *count* they are averaged over;
the caller divides by the count summed over all replicas. Then the loss (and gradient)
of a global batch is the same with 1 or N replicas and whatever the padded length, and
a replica whose rows are all filler (weight 0) contributes exactly nothing.
"""

from typing import Dict, Optional, Tuple

import tensorflow as tf

import contract
from trainer.data import WEIGHT


def targets(batch: Dict[str, tf.Tensor], task: str, eos_id: Optional[int] = None) -> tf.Tensor:
  """What each position of `model.model_inputs` predicts; PAD_ID where nothing is predicted."""
  tokens = batch[contract.TOKENS]
  if task == "lm":  # the next token, and the end id after the last (contract.lm_targets)
    return contract.lm_targets(tokens, batch[contract.LENGTH], eos_id)
  if task == "tag":
    return batch[contract.LABELS]
  return batch[contract.LABEL]


def target_mask(batch: Dict[str, tf.Tensor], target: tf.Tensor) -> tf.Tensor:
  """1.0 where a real target is (not padding, not a filler row), else 0.0."""
  weight = batch[WEIGHT]
  if target.shape.rank == 2:
    weight = weight[:, None]
  return tf.cast(tf.not_equal(target, contract.PAD_ID), tf.float32) * weight


def loss_sums(logits: tf.Tensor, target: tf.Tensor, mask: tf.Tensor,
              reduction: str) -> Tuple[tf.Tensor, tf.Tensor]:
  """(sum of losses, count to divide by) for this replica's batch.

  `token`: every real target counts once. `sequence` (the seed's): each sequence's mean
  token loss, then the mean over sequences with at least one target.
  """
  losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.cast(target, tf.int32), logits=tf.cast(logits, tf.float32)) * mask
  if reduction == "token" or target.shape.rank == 1:
    return tf.reduce_sum(losses), tf.reduce_sum(mask)
  per_sequence_count = tf.reduce_sum(mask, axis=1)
  per_sequence = tf.math.divide_no_nan(tf.reduce_sum(losses, axis=1), per_sequence_count)
  has_targets = tf.cast(per_sequence_count > 0, tf.float32)
  return tf.reduce_sum(per_sequence * has_targets), tf.reduce_sum(has_targets)


def correct_count(logits: tf.Tensor, target: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
  predictions = tf.argmax(logits, axis=-1, output_type=target.dtype)
  return tf.reduce_sum(tf.cast(tf.equal(predictions, target), tf.float32) * mask)
