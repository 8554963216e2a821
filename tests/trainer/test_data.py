"""The input pipeline on the pipeline's real output: nothing dropped, shapes bounded."""

import collections

import numpy as np
import pytest
import tensorflow as tf

import contract
from trainer import data


@pytest.mark.parametrize("replicas,pad_multiple", [(1, 0), (2, 0), (2, 4)])
def test_eval_batches_every_example_once_padded_to_bucket_boundaries(demo_tag_data, replicas, pad_multiple):
  metadata = contract.load_metadata(demo_tag_data)
  spec = data.bucket_spec(metadata, num_buckets=8, tokens_per_batch=512, replicas=replicas, pad_multiple=pad_multiple)
  assert all(size % replicas == 0 and size >= replicas for size in spec.batch_sizes)
  paths = contract.shard_paths(demo_tag_data, metadata.raw, "eval")
  dataset = data.make_dataset(paths, "tag", spec, replicas, training=False, chars=True)

  elements = list(dataset.as_numpy_iterator())
  assert len(elements) % replicas == 0
  seen = collections.Counter()
  for step in range(0, len(elements), replicas):
    group = elements[step:step + replicas]
    assert len({e[contract.TOKENS].shape for e in group}) == 1  # replicas of a step: same shape
    longest = max(e[contract.LENGTH].max() for e in group)
    boundary = min(b for b in spec.boundaries if b >= longest)
    lower = max([0] + [b for b in spec.boundaries if b < boundary])
    width = group[0][contract.TOKENS].shape[1]
    if pad_multiple:  # padded to the longest row, rounded up, never past the boundary
      assert width == min(boundary, -(-longest // pad_multiple) * pad_multiple)
    else:
      assert width == boundary
    # The chars axis: to the step's longest token rounded up alike, or to --max_token_chars.
    assert len({e[contract.CHARS].shape for e in group}) == 1 and group[0][contract.CHARS].shape[1] == width
    longest_token = max(int((e[contract.CHARS] != 0).sum(axis=-1).max()) for e in group)
    char_width = group[0][contract.CHARS].shape[2]
    assert char_width == (-(-longest_token // pad_multiple) * pad_multiple if pad_multiple
                          else metadata.max_token_chars)
    for element in group:
      tokens, labels, lengths, weights, chars = (element[contract.TOKENS], element[contract.LABELS],
                                                 element[contract.LENGTH], element[data.WEIGHT], element[contract.CHARS])
      assert ((lengths > lower) | (weights == 0)).all()  # all rows of a batch are of one bucket
      for row, length in enumerate(lengths):
        assert (tokens[row, :length] != contract.PAD_ID).all() and (tokens[row, length:] == contract.PAD_ID).all()
        assert (labels[row, length:] == contract.PAD_ID).all()
        assert (chars[row, length:] == contract.PAD_ID).all() and (chars[row, :length, 0] != contract.PAD_ID).all()
        if weights[row]:
          token_chars = tuple(tuple(int(c) for c in step if c) for step in chars[row, :length])
          assert all((step != 0).sum() == len(kept) for step, kept in zip(chars[row, :length], token_chars))
          seen[(tuple(tokens[row, :length]), token_chars)] += 1
  assert sum(seen.values()) == metadata.examples("eval")
  expected = collections.Counter()
  for serialized in tf.data.TFRecordDataset(paths):
    context, sequences = tf.io.parse_single_sequence_example(serialized, *contract.parsing_spec("tag", chars=True))
    expected[(tuple(sequences[contract.TOKENS].numpy()), tuple(map(tuple, sequences[contract.CHARS].to_list())))] += 1
  assert seen == expected


def test_bucket_spec_covers_eval_lengths_longer_than_train():
  metadata = contract.Metadata.from_dict({
      "task": "lm", "vocab": {"size": 10}, "bucket_boundaries": {"4": {"boundaries": [3, 9]}},
      "length_histogram": {"train": {"3": 5, "9": 1}, "eval": {"12": 1}}})
  spec = data.bucket_spec(metadata, 4, tokens_per_batch=36, replicas=2)
  assert spec.boundaries == [3, 9, 12]
  assert spec.batch_sizes == [12, 4, 2]


def test_a_batch_is_split_into_equal_replica_slices_filled_with_zero_weight_rows():
  rows = {contract.TOKENS: tf.ragged.constant([[9], [1, 2], [3], [4]], tf.int64),
          contract.LENGTH: tf.constant([1, 2, 1, 1], tf.int64)}
  table = tf.constant([[1, 3, 2], [0, 1, 1]], tf.int64)  # batches: rows 1..3 at width 2, row 0 at width 1
  parts, entries = data._with_fillers(data._to_parts(rows), table, replicas=2)  # pylint: disable=protected-access
  np.testing.assert_array_equal(entries, [[0, 4, 2], [4, 2, 1]])  # each batch gets one filler row
  batch = data._batch_from(parts, entries[0], replicas=2)  # pylint: disable=protected-access
  assert batch[contract.TOKENS].shape == (2, 2, 2)  # [replicas, per replica, width]
  np.testing.assert_array_equal(batch[contract.TOKENS], [[[1, 2], [3, 0]], [[4, 0], [1, 2]]])
  np.testing.assert_array_equal(batch[data.WEIGHT], [[1, 1], [1, 0]])
  np.testing.assert_array_equal(batch[contract.LENGTH], [[2, 1], [1, 2]])
  batch = data._batch_from(parts, entries[1], replicas=2)  # pylint: disable=protected-access
  np.testing.assert_array_equal(batch[contract.TOKENS], [[[9]], [[9]]])
  np.testing.assert_array_equal(batch[data.WEIGHT], [[1], [0]])
