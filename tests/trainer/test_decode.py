"""Viterbi, the forward algorithm and the tag decoder against brute force over every path."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

import contract
from tests.trainer.test_entities import BIOES_LABELS, IOB_LABELS, well_formed
from trainer import crf
from trainer import decode
from trainer import entities

NUM_LABELS = 4


def random_case(seed, rows=7, longest=4, width=6, forbid=0.3):
  """Random scores with forbidden moves (-inf), rows of 0..longest positions padded to
  `width` with garbage (which must change nothing)."""
  rng = np.random.default_rng(seed)
  emissions = rng.normal(0, 2, size=[rows, width, NUM_LABELS]).astype(np.float32)
  transitions = rng.normal(0, 1, size=[NUM_LABELS, NUM_LABELS]).astype(np.float32)
  transitions[rng.random(transitions.shape) < forbid] = -np.inf
  start, end = (rng.normal(0, 1, size=[NUM_LABELS]).astype(np.float32) for _ in range(2))
  start[0] = -np.inf  # label 0 never starts nor ends
  end[0] = -np.inf
  lengths = rng.integers(0, longest + 1, size=[rows]).astype(np.int32)
  lengths[:2] = [0, longest]
  return emissions, transitions, start, end, lengths


def brute_scores(emissions, transitions, start, end, length):
  """{path: score} over every path of a row."""
  scores = {}
  for path in itertools.product(range(NUM_LABELS), repeat=length):
    if not path:
      continue
    score = start[path[0]] + end[path[-1]] + sum(emissions[t, y] for t, y in enumerate(path))
    scores[path] = score + sum(transitions[a, b] for a, b in zip(path, path[1:]))
  return scores


def finite(values):
  return tf.constant(np.where(np.isfinite(values), values, decode.FORBIDDEN), tf.float32)


@pytest.mark.parametrize("seed", range(4))
def test_viterbi_and_the_forward_algorithm_match_brute_force_under_padding(seed):
  emissions, transitions, start, end, lengths = random_case(seed)
  tags, best = decode.viterbi(emissions, transitions, start, end, lengths)
  log_z = decode.log_partition(emissions, finite(transitions), finite(start), finite(end), lengths)
  for row, length in enumerate(lengths):
    scores = brute_scores(emissions[row], transitions, start, end, length)
    if not length:
      assert float(best[row]) == 0.0 and float(log_z[row]) == 0.0 and (tags[row].numpy() == contract.PAD_ID).all()
      continue
    path = tuple(tags[row, :length].numpy().tolist())
    want = max(scores.values())
    assert np.isfinite(want)  # the case allows some path
    assert scores[path] == pytest.approx(want, abs=1e-4) and float(best[row]) == pytest.approx(want, abs=1e-4)
    assert (tags[row, length:].numpy() == contract.PAD_ID).all()
    values = np.array([v for v in scores.values() if np.isfinite(v)], np.float64)
    assert float(log_z[row]) == pytest.approx(np.log(np.exp(values - values.max()).sum()) + values.max(), abs=1e-4)
    score = decode.path_score(emissions[row:row + 1], tags[row:row + 1], finite(transitions), finite(start),
                              finite(end), lengths[row:row + 1])
    assert float(score[0]) == pytest.approx(want, abs=1e-4)

  # Wider padding holding other garbage, and the rows cut to their lengths: the same results.
  wider = np.concatenate([emissions, np.full([len(lengths), 5, NUM_LABELS], 7.0, np.float32)], axis=1)
  for padded in (wider, emissions[:, :max(lengths)]):
    again, again_best = decode.viterbi(padded, transitions, start, end, lengths)
    np.testing.assert_array_equal(again[:, :max(lengths)], tags[:, :max(lengths)])
    np.testing.assert_allclose(again_best, best, rtol=1e-6)
    np.testing.assert_allclose(decode.log_partition(padded, finite(transitions), finite(start), finite(end), lengths),
                               log_z, rtol=1e-6)


def test_forward_gradients_are_the_label_marginals_and_never_nan():
  # Label 3 is unreachable (no move into it, it cannot start): its marginals are 0, its
  # gradients 0, not NaN.
  emissions, transitions, start, end, lengths = random_case(9, forbid=0.2)
  transitions[:, 3] = -np.inf
  start[3] = -np.inf
  emissions_var = tf.Variable(emissions)
  with tf.GradientTape() as tape:
    total = tf.reduce_sum(decode.log_partition(emissions_var, finite(transitions), finite(start), finite(end),
                                               lengths))
  gradient = tape.gradient(total, emissions_var).numpy()
  assert np.isfinite(gradient).all()
  for row, length in enumerate(lengths):
    scores = brute_scores(emissions[row], transitions, start, end, length)
    marginals = np.zeros([emissions.shape[1], NUM_LABELS])
    total = np.logaddexp.reduce([v for v in scores.values() if np.isfinite(v)]) if length else 0.0
    for path, score in scores.items():
      for t, label in enumerate(path):
        marginals[t, label] += np.exp(score - total) if np.isfinite(score) else 0.0
    np.testing.assert_allclose(gradient[row], marginals, atol=1e-5)


def test_compact_and_expand_put_words_side_by_side_and_back():
  mask = tf.constant([[True, False, False, True, True, False], [False, False, False, False, False, False],
                      [True, True, True, True, True, True]])
  values = tf.constant(np.arange(18).reshape(3, 6))
  order, lengths = decode.compact(mask)
  compacted = tf.gather(values, order, batch_dims=1)
  assert lengths.numpy().tolist() == [3, 0, 6]
  assert compacted.numpy()[0, :3].tolist() == [0, 3, 4] and compacted.numpy()[2].tolist() == list(range(12, 18))
  np.testing.assert_array_equal(decode.expand(compacted, mask, -1), np.where(mask, values, -1))


@pytest.mark.parametrize("scheme", ["iob1", "iob2", "bioes"])
@pytest.mark.parametrize("with_crf", [False, True], ids=["softmax", "crf"])
def test_decoded_tags_are_always_well_formed_and_padding_and_holes_change_nothing(scheme, with_crf):
  labels = BIOES_LABELS if scheme == "bioes" else IOB_LABELS
  rng = np.random.default_rng(len(scheme) + with_crf)
  rows, width = 200, 10
  logits = rng.normal(0, 3, size=[rows, width, len(labels)]).astype(np.float32)
  lengths = rng.integers(1, width + 1, size=[rows])
  words = np.arange(width)[None, :] < lengths[:, None]
  transitions = None
  if with_crf:  # learned scores that favour forbidden moves must not matter
    transitions = crf.Transitions()
    transitions.build((None, None, len(labels)))
    for weight in (transitions.transitions, transitions.start, transitions.end):
      weight.assign(rng.normal(0, 3, size=weight.shape))
  decoder = crf.TagDecoder(entities.build_tables(labels, scheme), transitions)
  tags = decoder.decode(tf.constant(logits), tf.constant(words)).numpy()
  for row, length in zip(tags, lengths):
    assert well_formed(scheme, [labels[i] for i in row[:length]]), [labels[i] for i in row[:length]]
    assert (row[length:] == contract.PAD_ID).all()

  # The same words with WordPiece-like holes (positions that are no word) between them,
  # and more padding: each word gets the same tag, the holes <pad>.
  spread_words = np.zeros([rows, 2 * width + 3], bool)
  spread_logits = rng.normal(0, 3, size=[rows, 2 * width + 3, len(labels)]).astype(np.float32)
  for row in range(rows):
    positions = np.sort(rng.choice(2 * width, size=lengths[row], replace=False))
    spread_words[row, positions] = True
    spread_logits[row, positions] = logits[row, :lengths[row]]
  spread = decoder.decode(tf.constant(spread_logits), tf.constant(spread_words)).numpy()
  for row in range(rows):
    assert spread[row][spread_words[row]].tolist() == tags[row, :lengths[row]].tolist()
    assert (spread[row][~spread_words[row]] == contract.PAD_ID).all()


def test_viterbi_over_log_softmax_is_argmax_where_argmax_is_well_formed():
  labels = IOB_LABELS
  decoder = crf.TagDecoder(entities.build_tables(labels, "iob2"))
  o, b_per, i_per = (labels.index(l) for l in ("O", "B-PER", "I-PER"))
  logits = np.zeros([2, 3, len(labels)], np.float32)
  for row, path in enumerate([[b_per, i_per, o], [o, i_per, i_per]]):  # the second is not IOB2
    logits[row, np.arange(3), path] = 5.0
  tags = decoder.decode(tf.constant(logits), tf.ones([2, 3], tf.bool)).numpy().tolist()
  assert tags[0] == [b_per, i_per, o]
  assert tags[1] != [o, i_per, i_per] and well_formed("iob2", [labels[i] for i in tags[1]])
