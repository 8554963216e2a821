"""Linear-chain algorithms over label scores: Viterbi and the forward algorithm, exact under padding.

Scores are `emissions` [B, T, L] (position, label), `transitions` [L, L] (previous label,
label), `start` [L] and `end` [L]. The path y_0 … y_{n-1} of a row of length n scores

    start[y_0] + Σ_t emissions[t, y_t] + Σ_{t≥1} transitions[y_{t-1}, y_t] + end[y_{n-1}]

Rows are left-aligned: their words first, then padding. At a position past its length a
row carries its state unchanged (Viterbi: back-pointers to itself), so padding changes
nothing: a row's result is that of the row cut to its length, whatever the batch's width
and whatever the padded positions hold. A row of length 0 scores 0 and decodes to nothing.

A forbidden move is -inf for `viterbi`, which never takes one while any allowed path
exists. The forward algorithm takes FORBIDDEN instead: finite, so that a label no path
reaches contributes exp(-1e30) = 0 to the sums and a zero gradient, where -inf would give
NaN (-inf minus -inf) in the gradient of a logsumexp whose inputs are all -inf.

For example, two labels, transitions forbidding 0 → 0, and one row of length 2:

>>> import tensorflow as tf
>>> emissions = tf.constant([[[1., 0.], [2., 0.], [9., 9.]]])  # the last position is padding
>>> transitions = tf.constant([[-float("inf"), 0.], [0., 0.]])
>>> tags, score = viterbi(emissions, transitions, tf.zeros([2]), tf.zeros([2]), tf.constant([2]))
>>> tags.numpy().tolist(), float(score[0])
([[1, 0, 0]], 2.0)

(0 then 0 would score 3, but 0 → 0 is forbidden; past the length: <pad>, id 0.)
"""

from typing import Tuple

import tensorflow as tf

import contract

FORBIDDEN = -1e30


def compact(mask: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """Left-aligns the positions of each row where `mask` holds, keeping their order.

  Returns (order [B, T] int32, lengths [B] int32): `tf.gather(x, order, batch_dims=1)`
  puts row b's masked positions first (its first lengths[b] entries). WordPiece
  continuation pieces carry no label (mask False): the words of a row are then adjacent.

  >>> order, lengths = compact(tf.constant([[True, False, True, False]]))
  >>> order.numpy().tolist(), lengths.numpy().tolist()
  ([[0, 2, 1, 3]], [2])
  """
  order = tf.argsort(tf.cast(tf.logical_not(mask), tf.int32), axis=1, stable=True)
  return order, tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)


def expand(compacted: tf.Tensor, mask: tf.Tensor, fill) -> tf.Tensor:
  """The inverse of `compact`: each masked position gets its entry of `compacted`, the others `fill`."""
  index = tf.cumsum(tf.cast(mask, tf.int32), axis=1, exclusive=True)
  return tf.where(mask, tf.gather(compacted, index, batch_dims=1), fill)


def _time_major(emissions: tf.Tensor) -> tf.Tensor:
  """[B, T, L] → [T + 1, B, L]: one padding position more, so every batch has a first
  position (also one of width 0) and the scans below have a step to carry."""
  return tf.transpose(tf.pad(emissions, [[0, 0], [0, 1], [0, 0]]), [1, 0, 2])


def _last(first: tf.Tensor, scanned: tf.Tensor) -> tf.Tensor:
  return tf.concat([first[None], scanned], axis=0)[-1]


def viterbi(emissions, transitions, start, end, lengths) -> Tuple[tf.Tensor, tf.Tensor]:
  """The best path of each row: (tags [B, T] int32, <pad> past the length; its score [B]).

  Ties go to the lower label id.
  """
  width = tf.shape(emissions)[1]
  steps = _time_major(emissions)
  lengths = tf.cast(lengths, tf.int32)
  itself = tf.broadcast_to(tf.range(tf.shape(steps)[2])[None, :], tf.shape(steps[0]))

  def forward(carry, inputs):
    scores, _ = carry
    time, emission = inputs
    candidates = scores[:, :, None] + transitions[None]  # [B, previous, label]
    live = (time < lengths)[:, None]
    best = tf.reduce_max(candidates, axis=1) + emission
    pointers = tf.argmax(candidates, axis=1, output_type=tf.int32)
    return tf.where(live, best, scores), tf.where(live, pointers, itself)

  first = start[None, :] + steps[0]
  scores, pointers = tf.scan(forward, (tf.range(1, width + 1), steps[1:]), initializer=(first, itself))
  final = _last(first, scores) + end[None, :]
  last = tf.argmax(final, axis=-1, output_type=tf.int32)
  # pointers[k] maps the label at k + 1 to the best label at k; read backwards from the last.
  earlier = tf.scan(lambda label, pointer: tf.gather(pointer, label, batch_dims=1), pointers,
                    initializer=last, reverse=True)
  tags = tf.transpose(tf.concat([earlier, last[None]], axis=0))[:, :width]
  inside = tf.range(width)[None, :] < lengths[:, None]
  return tf.where(inside, tags, contract.PAD_ID), tf.where(lengths > 0, tf.reduce_max(final, axis=-1), 0.0)


def log_partition(emissions, transitions, start, end, lengths) -> tf.Tensor:
  """log Σ over all paths of exp(score), per row [B] (0 for a row of length 0)."""
  width = tf.shape(emissions)[1]
  steps = _time_major(emissions)
  lengths = tf.cast(lengths, tf.int32)

  def forward(scores, inputs):
    time, emission = inputs
    summed = tf.reduce_logsumexp(scores[:, :, None] + transitions[None], axis=1) + emission
    return tf.where((time < lengths)[:, None], summed, scores)

  first = start[None, :] + steps[0]
  scores = tf.scan(forward, (tf.range(1, width + 1), steps[1:]), initializer=first)
  total = tf.reduce_logsumexp(_last(first, scores) + end[None, :], axis=-1)
  return tf.where(lengths > 0, total, 0.0)


def path_score(emissions, tags, transitions, start, end, lengths) -> tf.Tensor:
  """The score of a given path per row [B] (tags [B, T]; entries past the length are ignored)."""
  emissions = tf.pad(emissions, [[0, 0], [0, 1], [0, 0]])
  tags = tf.pad(tf.cast(tags, tf.int32), [[0, 0], [0, 1]])
  lengths = tf.cast(lengths, tf.int32)
  inside = tf.range(tf.shape(tags)[1])[None, :] < lengths[:, None]
  tags = tf.where(inside, tags, 0)  # any label id: ignored, but a valid index
  unary = tf.gather(emissions, tags, batch_dims=2)
  pairs = tf.gather_nd(transitions, tf.stack([tags[:, :-1], tags[:, 1:]], axis=-1))
  last = tf.gather(tags, tf.maximum(lengths - 1, 0), batch_dims=1)
  ends = tf.gather(start, tags[:, 0]) + tf.gather(end, last)
  return (tf.reduce_sum(tf.where(inside, unary, 0.0), axis=1)
          + tf.reduce_sum(tf.where(inside[:, 1:], pairs, 0.0), axis=1)
          + tf.where(lengths > 0, ends, 0.0))
