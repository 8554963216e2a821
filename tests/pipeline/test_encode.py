"""In-graph SequenceExample encoding: byte-identical to deterministic SerializeToString."""

import numpy as np
import pyarrow as pa
import tensorflow as tf
import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

import contract
from pipeline import counts
from pipeline.encode import EncodeSequenceExamples, encode_sequence_examples
from tests.pipeline.beam_testing import test_pipeline


def python_proto(length, tokens, labels=None, label=None):
  example = tf.train.SequenceExample()
  example.context.feature["length"].int64_list.value.append(length)
  if label is not None:
    example.context.feature["label"].int64_list.value.append(label)
  for name, values in (("tokens", tokens), ("labels", labels)):
    if values is not None:
      feature_list = example.feature_lists.feature_list[name]
      for value in values:
        feature_list.feature.add().int64_list.value.append(value)
  return example.SerializeToString(deterministic=True)


def test_bytes_equal_python_protobuf_for_every_task():
  tokens = [[5, 2, 1 << 40], [7], [3, 3, 3, 3, 3]]
  labels = [[2, 3, 2], [4], [2, 2, 2, 2, 9]]
  ragged = lambda rows: tf.ragged.constant(rows, dtype=tf.int64)
  lengths = np.array([3, 1, 5])
  lm = encode_sequence_examples({"length": lengths}, {"tokens": ragged(tokens)}).numpy()
  tag = encode_sequence_examples({"length": lengths}, {"tokens": ragged(tokens), "labels": ragged(labels)}).numpy()
  classify = encode_sequence_examples({"length": lengths, "label": np.array([2, 3, 4])},
                                      {"tokens": ragged(tokens)}).numpy()
  for i in range(3):
    assert lm[i] == python_proto(lengths[i], tokens[i])
    assert tag[i] == python_proto(lengths[i], tokens[i], labels=labels[i])
    assert classify[i] == python_proto(lengths[i], tokens[i], label=[2, 3, 4][i])


def transformed_batch(token_rows, truncated):
  lists = pa.large_list(pa.int64())
  return pa.record_batch(
      [pa.array(token_rows, lists), pa.array([[len(r)] for r in token_rows], lists),
       pa.array([[t] for t in truncated], lists)],
      names=[contract.TOKENS, contract.LENGTH, "truncated"])


def test_encode_transform_drops_empty_rows_and_counts():
  batch = transformed_batch([[2, 3], [], [4]], truncated=[1, 0, 0])
  with test_pipeline() as p:
    out = p | beam.Create([batch]) | EncodeSequenceExamples("lm", "train")
    assert_that(out.serialized | beam.FlatMap(lambda records: records),
                equal_to([python_proto(2, [2, 3]), python_proto(1, [4])]), label="records")
    assert_that(out[counts.COUNTS], equal_to([
        ("filtered/empty", 1), ("examples/train", 2), ("tokens/train", 3), ("truncated", 1),
        ("length/train/1", 1), ("length/train/2", 1)]), label="counts")
