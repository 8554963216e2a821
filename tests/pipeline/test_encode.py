"""In-graph SequenceExample encoding: byte-identical to deterministic SerializeToString."""

import numpy as np
import pyarrow as pa
import tensorflow as tf
import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

import contract
from pipeline import counts
from pipeline import encode
from pipeline.encode import EncodeSequenceExamples
from tests.pipeline.beam_testing import test_pipeline


def python_proto(length, tokens, labels=None, label=None, chars=None):
  example = tf.train.SequenceExample()
  example.context.feature["length"].int64_list.value.append(length)
  if label is not None:
    example.context.feature["label"].int64_list.value.append(label)
  for name, values in (("tokens", tokens), ("labels", labels)):
    if values is not None:
      feature_list = example.feature_lists.feature_list[name]
      for value in values:
        feature_list.feature.add().int64_list.value.append(value)
  if chars is not None:
    feature_list = example.feature_lists.feature_list["chars"]
    for values in chars:
      feature_list.feature.add().int64_list.value.extend(values)
      feature_list.feature[-1].int64_list.SetInParent()  # a step of no values is still an int64_list
  return example.SerializeToString(deterministic=True)


def ragged(rows):
  """Rows of ints → (values, row_splits), as the encoder takes a [batch, (time)] list."""
  return (np.array([v for row in rows for v in row], np.int64),
          np.cumsum([0] + [len(row) for row in rows]).astype(np.int64))


def test_bytes_equal_python_protobuf_for_every_task():
  # Ids in the tables, one past MAX_TABLE_SIZE and one negative (encoded for the batch only).
  tokens = [[5, 2, 1 << 40], [7], [3, 3, 3, 3, -1]]
  labels = [[2, 3, 2], [4], [2, 2, 2, 2, 9]]
  lengths = np.array([3, 1, 5])
  lm = encode.Encoder.for_task("lm")({"length": lengths}, {"tokens": ragged(tokens)})
  tag = encode.Encoder.for_task("tag")({"length": lengths}, {"tokens": ragged(tokens), "labels": ragged(labels)})
  classify = encode.Encoder.for_task("classify")({"length": lengths, "label": np.array([2, 3, 4])},
                                                 {"tokens": ragged(tokens)})
  for i in range(3):
    assert lm[i] == python_proto(lengths[i], tokens[i])
    assert tag[i] == python_proto(lengths[i], tokens[i], labels=labels[i])
    assert classify[i] == python_proto(lengths[i], tokens[i], label=[2, 3, 4][i])


def nested(rows):
  """Rows of steps of ints → (values, value_splits, row_splits), as the encoder takes a
  [batch, (time), (values)] list."""
  steps = [step for row in rows for step in row]
  return (np.array([v for step in steps for v in step], np.int64),
          np.cumsum([0] + [len(step) for step in steps]).astype(np.int64),
          np.cumsum([0] + [len(row) for row in rows]).astype(np.int64))


def test_steps_of_several_values_equal_python_protobuf():
  # Steps of 1 to 300 values (the packed list's length takes two bytes), of none, ids of
  # several varint sizes and a negative one (ten bytes); in every task's layout.
  chars = [[[5, 2, 1 << 40], [7]], [list(range(300))], [[3], [], [2, 2, -1, 1 << 20], [9], [4]]]
  tokens = [[5, 2], [7], [3, 3, 3, 3, 4]]
  labels = [[2, 3], [4], [2, 2, 2, 2, 9]]
  lengths = np.array([2, 1, 5])
  tag = encode.Encoder.for_task("tag", chars=True)(
      {"length": lengths}, {"tokens": ragged(tokens), "labels": ragged(labels), "chars": nested(chars)})
  lm = encode.Encoder.for_task("lm", chars=True)({"length": lengths}, {"tokens": ragged(tokens), "chars": nested(chars)})
  classify = encode.Encoder.for_task("classify", chars=True)(
      {"length": lengths, "label": np.array([2, 3, 4])}, {"tokens": ragged(tokens), "chars": nested(chars)})
  for i in range(3):
    assert tag[i] == python_proto(lengths[i], tokens[i], labels=labels[i], chars=chars[i])
    assert lm[i] == python_proto(lengths[i], tokens[i], chars=chars[i])
    assert classify[i] == python_proto(lengths[i], tokens[i], label=[2, 3, 4][i], chars=chars[i])
  # A slice of a batch (the encoder is given splits that do not start at 0 after slicing).
  values, value_splits, row_splits = nested(chars)
  sliced = encode.Encoder.for_task("lm", chars=True)(
      {"length": lengths[1:]}, {"tokens": ragged(tokens[1:]), "chars": (
          values[value_splits[row_splits[1]]:], value_splits[row_splits[1]:] - value_splits[row_splits[1]],
          row_splits[1:] - row_splits[1])})
  assert sliced.tolist() == lm[1:].tolist()


def test_tables_grow_with_the_ids_and_stay_exact():
  encoder = encode.Encoder.for_task("lm")
  rng = np.random.default_rng(0)
  for largest in (10, 300, encode.MIN_TABLE_SIZE + 1, 70_000):  # every batch past the last table
    rows = [rng.integers(0, largest + 1, size=n).tolist() for n in (1, 4, 17)]
    rows[0] = [largest]
    lengths = np.array([len(row) for row in rows])
    serialized = encoder({"length": lengths}, {"tokens": ragged(rows)})
    assert serialized.tolist() == [python_proto(n, row) for n, row in zip(lengths, rows)]


def test_record_table_concatenates_records_with_offsets():
  table = encode.RecordTable(encode.step_records)
  data, offsets = table.concatenated(np.array([2, 300, 2], np.int64))
  one = [encode.step_records(tf.constant([v], tf.int64)).numpy()[0] for v in (2, 300, 2)]
  assert data == b"".join(one)
  assert offsets.tolist() == [0, len(one[0]), len(one[0]) + len(one[1]), len(data)]


def transformed_batch(token_rows, truncated, characters, chars=None, chars_truncated=None):
  lists = pa.large_list(pa.int64())
  columns = [pa.array(token_rows, lists), pa.array([[len(r)] for r in token_rows], lists),
             pa.array([[t] for t in truncated], lists), pa.array([[c] for c in characters], lists)]
  names = [contract.TOKENS, contract.LENGTH, "truncated", "characters"]
  if chars is not None:  # as TFT hands a [batch, (tokens), (chars)] output over
    columns += [pa.array(chars, pa.large_list(lists)), pa.array([[t] for t in chars_truncated], lists)]
    names += [contract.CHARS, "chars_truncated"]
  return pa.record_batch(columns, names=names)


def test_encode_transform_drops_empty_rows_and_counts():
  batch = transformed_batch([[2, contract.UNK_ID], [], [4]], truncated=[1, 0, 0], characters=[7, 5, 3])
  with test_pipeline() as p:
    out = p | beam.Create([batch]) | EncodeSequenceExamples("lm", "train")
    assert_that(out.serialized | beam.FlatMap(lambda records: records),
                equal_to([python_proto(2, [2, contract.UNK_ID]), python_proto(1, [4])]), label="records")
    # The empty row's characters are not counted: it is filtered, not written.
    assert_that(out[counts.COUNTS], equal_to([
        ("filtered/empty", 1), ("examples/train", 2), ("tokens/train", 3), ("truncated", 1),
        ("unknown/train", 1), ("characters/train", 10),
        ("length/train/1", 1), ("length/train/2", 1)]), label="counts")


def test_encode_transform_writes_chars_from_nested_lists_and_counts_their_truncations():
  chars = [[[4, 5], [1]], [], [[6, 2, 3]]]
  batch = transformed_batch([[2, contract.UNK_ID], [], [4]], truncated=[0, 0, 0], characters=[7, 5, 3],
                            chars=chars, chars_truncated=[1, 0, 2])
  batch = batch.slice(1)  # a slice: list offsets that do not start at 0
  with test_pipeline() as p:
    out = p | beam.Create([batch]) | EncodeSequenceExamples("lm", "train", chars=True)
    assert_that(out.serialized | beam.FlatMap(lambda records: records),
                equal_to([python_proto(1, [4], chars=[[6, 2, 3]])]), label="records")
    assert_that(out[counts.COUNTS] | beam.Filter(lambda pair: pair[0] == counts.TRUNCATED_CHARS),
                equal_to([(counts.TRUNCATED_CHARS, 2)]), label="counts")
