"""EncodeSequenceExamples: transformed RecordBatches → serialized SequenceExamples.

The bytes equal `SerializeToString(deterministic=True)` (map entries in key order), so
shards are byte-identical whatever the process, and no Python object is made per token.

A serialized message is the concatenation of its fields' records, and a repeated field
adds one record per value. So the bulk of the work, the time steps, is a lookup: a table
holds, for each id, the record one step adds to a `FeatureList` (field 1, a `Feature`
holding that int64), and a batch's feature lists are one numpy gather from it. Context
features work the same way, with a table per key of the record `{key: Feature(value)}`
adds to `Features`. The tables are built by `tf.io.encode_proto` itself and grow on
demand; the few per-example layers above (FeatureLists map entries, FeatureLists,
SequenceExample) are built by `encode_proto` in one traced graph per batch: faster than
`encode_proto` per step and than the Python protobuf API (BENCHMARKS.md).

A feature list whose steps hold several values (`chars`: a token's character ids) has no
table: its steps are a padded [steps, values] tensor with each step's size, serialized by
`encode_proto` in one graph per batch (`value_step_records`), which also joins them and
returns their lengths, so no Python object is made per step either.
"""

from typing import Dict, Sequence, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import tensorflow as tf

import contract
from pipeline import counts

MIN_TABLE_SIZE = 1 << 12
# Tables cover ids below this (a vocabulary of up to 4 M entries, ~40 MB of table); a
# batch's larger ids are encoded for that batch only.
MAX_TABLE_SIZE = 1 << 22


def _encode(message_type: str, fields: Dict[str, tf.Tensor], sizes: Dict[str, tf.Tensor] = None):
  """Serializes a batch of messages; `fields` are [batch, max_count] tensors.

  `sizes[name]` is the per-message count of a repeated field (default: every field once).
  """
  names = list(fields)
  batch = tf.shape(fields[names[0]])[0]
  ones = tf.ones([batch], tf.int32)
  size_columns = [tf.cast(sizes[name], tf.int32) if sizes and name in sizes else ones for name in names]
  return tf.io.encode_proto(
      sizes=tf.stack(size_columns, axis=1),
      values=[fields[name] for name in names],
      field_names=names,
      message_type=message_type)


def _int64_features(values: tf.Tensor) -> tf.Tensor:
  """[n] int64 → [n] serialized `Feature`s, each holding one int64."""
  int64_list = _encode("tensorflow.Int64List", {"value": values[:, None]})
  return _encode("tensorflow.Feature", {"int64_list": int64_list[:, None]})


def step_records(values: tf.Tensor) -> tf.Tensor:
  """[n] int64 → the record each value adds to a `FeatureList` as one time step."""
  return _encode("tensorflow.FeatureList", {"feature": _int64_features(values)[:, None]})


def value_step_records(values: tf.Tensor, value_splits: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """Steps of any number of int64s → (their FeatureList records end to end, each one's length).

  `values` [n] and `value_splits` [steps + 1]: step i holds values[value_splits[i]:value_splits[i + 1]].
  """
  steps = tf.RaggedTensor.from_row_splits(values, value_splits, validate=False)
  int64_list = _encode("tensorflow.Int64List", {"value": steps.to_tensor()}, sizes={"value": steps.row_lengths()})
  feature = _encode("tensorflow.Feature", {"int64_list": int64_list[:, None]})
  records = _encode("tensorflow.FeatureList", {"feature": feature[:, None]})
  return tf.strings.reduce_join(records), tf.strings.length(records)


def context_records(key: str, values: tf.Tensor) -> tf.Tensor:
  """[n] int64 → the record `{key: Feature(value)}` adds to a `Features` message."""
  keys = tf.fill(tf.shape(values), key)
  entries = _encode("tensorflow.Features.FeatureEntry",
                    {"key": keys[:, None], "value": _int64_features(values)[:, None]})
  return _encode("tensorflow.Features", {"feature": entries[:, None]})


def _flatten(records: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Byte strings → (all bytes as uint8, start of each, length of each)."""
  lengths = np.fromiter(map(len, records), np.int64, len(records))
  return np.frombuffer(b"".join(records), np.uint8), np.cumsum(lengths) - lengths, lengths


def _table_size(largest: int) -> int:
  size = MIN_TABLE_SIZE
  while size <= largest and size < MAX_TABLE_SIZE:
    size *= 2
  return size


class RecordTable:
  """Per int64 value, the bytes `build` makes of it, looked up a batch at a time."""

  def __init__(self, build):
    self._build = tf.function(build, input_signature=[tf.TensorSpec([None], tf.int64)], autograph=False)
    self._flat, self._starts, self._lengths = np.zeros(0, np.uint8), np.zeros(0, np.int64), np.zeros(0, np.int64)

  def _records(self, values: np.ndarray):
    """(source bytes, start and length of each value's record in them)."""
    largest = int(values.max()) if values.size else -1
    if len(self._lengths) <= largest < MAX_TABLE_SIZE:
      self._flat, self._starts, self._lengths = _flatten(
          self._build(tf.range(_table_size(largest), dtype=tf.int64)).numpy())
    outside = (values < 0) | (values >= len(self._lengths))
    if not outside.any():
      return self._flat, self._starts[values], self._lengths[values]
    # Ids past MAX_TABLE_SIZE (or negative): encode this batch's few distinct ones.
    extra_values, inverse = np.unique(values[outside], return_inverse=True)
    extra_flat, extra_starts, extra_lengths = _flatten(self._build(extra_values).numpy())
    starts, lengths = np.empty(len(values), np.int64), np.empty(len(values), np.int64)
    inside = values[~outside]
    starts[~outside], lengths[~outside] = self._starts[inside], self._lengths[inside]
    starts[outside], lengths[outside] = extra_starts[inverse] + len(self._flat), extra_lengths[inverse]
    return np.concatenate([self._flat, extra_flat]), starts, lengths

  def concatenated(self, values: np.ndarray) -> Tuple[bytes, np.ndarray]:
    """The values' records end to end, and offsets [len(values) + 1] of each one's start."""
    values = np.asarray(values, np.int64)
    source, starts, lengths = self._records(values)
    offsets = np.zeros(len(values) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    index = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
    return source[index].tobytes(), offsets


def _slices(data: tf.Tensor, offsets: tf.Tensor) -> tf.Tensor:
  """A scalar string and offsets [n + 1] → the n strings between consecutive offsets."""
  return tf.strings.substr(data, offsets[:-1], offsets[1:] - offsets[:-1])


def assemble(features: tf.Tensor, feature_lists: Dict[str, tf.Tensor]) -> tf.Tensor:
  """Serialized `Features` [batch] and `FeatureList`s {name: [batch]} → SequenceExamples."""
  list_entries = []
  for name in sorted(feature_lists):  # deterministic serialization orders map entries by key
    keys = tf.fill(tf.shape(feature_lists[name]), name)
    list_entries.append(_encode("tensorflow.FeatureLists.FeatureListEntry",
                                {"key": keys[:, None], "value": feature_lists[name][:, None]}))
  list_entries = tf.stack(list_entries, axis=1)
  lists = _encode("tensorflow.FeatureLists", {"feature_list": list_entries},
                  sizes={"feature_list": tf.fill(tf.shape(list_entries)[:1], len(feature_lists))})
  return _encode("tensorflow.SequenceExample", {"context": features[:, None], "feature_lists": lists[:, None]})


def _assemble_parts(context: Dict[str, Tuple[tf.Tensor, tf.Tensor]],
                    sequences: Dict[str, Tuple[tf.Tensor, tf.Tensor]]) -> tf.Tensor:
  """`assemble` from (bytes, offsets [batch + 1]) per name, as `RecordTable.concatenated` gives.

  For sequences the offsets are those of each example's first step.
  """
  features = tf.strings.join([_slices(*context[name]) for name in sorted(context)])
  return assemble(features, {name: _slices(*part) for name, part in sequences.items()})


class Encoder:
  """Serializes batches of SequenceExamples with the given context and sequence names
  (`value_names`: the feature lists whose steps hold any number of values)."""

  def __init__(self, context_names: Sequence[str], sequence_names: Sequence[str], value_names: Sequence[str] = ()):
    self.context_tables = {name: RecordTable(lambda values, name=name: context_records(name, values))
                           for name in context_names}
    self.step_table = RecordTable(step_records)
    part = (tf.TensorSpec([], tf.string), tf.TensorSpec([None], tf.int64))
    self._assemble = tf.function(_assemble_parts, autograph=False, input_signature=[
        {name: part for name in context_names}, {name: part for name in [*sequence_names, *value_names]}])
    self._value_steps = tf.function(value_step_records, autograph=False, input_signature=[
        tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.int64)])

  @classmethod
  def for_task(cls, task: str, chars: bool = False) -> "Encoder":
    spec = contract.feature_spec(task, chars)
    return cls(list(spec["context"]), list(spec["sequence"]), list(spec.get("sequence_values", {})))

  def __call__(self, context: Dict[str, np.ndarray], sequences: Dict[str, Tuple[np.ndarray, ...]]) -> np.ndarray:
    """Serializes a batch.

    Args:
      context: name → [batch] int64 (one value per example).
      sequences: name → (values, row_splits): a [batch, (time)] int64 list, one Feature
        per time step; or, for a feature list of `value_names`, (values, value_splits,
        row_splits): a [batch, (time), (values)] list, as `tf.RaggedTensor.from_nested_row_splits`.

    Returns:
      [batch] bytes (numpy object array), each `SerializeToString(deterministic=True)`.
    """
    context_parts = {name: table.concatenated(context[name]) for name, table in self.context_tables.items()}
    sequence_parts = {}
    for name, (values, *splits) in sequences.items():
      if len(splits) == 1:
        data, step_offsets = self.step_table.concatenated(values)
      else:  # steps of several values: [steps] records joined in the graph, offsets from their lengths
        data, lengths = self._value_steps(np.asarray(values, np.int64), np.asarray(splits[0], np.int64))
        step_offsets = np.zeros(len(lengths) + 1, np.int64)
        np.cumsum(lengths.numpy(), out=step_offsets[1:])
      sequence_parts[name] = (data, step_offsets[np.asarray(splits[-1], np.int64)])
    return self._assemble(context_parts, sequence_parts).numpy()


def _list_values(column: pa.Array) -> Tuple[np.ndarray, np.ndarray]:
  """A pyarrow list<int64> column → (flat values, row splits from 0), respecting slices."""
  offsets = np.asarray(column.offsets, dtype=np.int64)
  return np.asarray(column.flatten(), dtype=np.int64), offsets - offsets[0]


def _nested_list_values(column: pa.Array) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """A pyarrow list<list<int64>> column → (flat values, value splits per step, step splits
  per row), both splits from 0, respecting slices."""
  row_offsets = np.asarray(column.offsets, dtype=np.int64)
  steps = column.flatten()
  value_offsets = np.asarray(steps.offsets, dtype=np.int64)
  return (np.asarray(steps.flatten(), dtype=np.int64), value_offsets - value_offsets[0],
          row_offsets - row_offsets[0])


def _scalars(column: pa.Array) -> np.ndarray:
  """A pyarrow list<int64> column with one value per row → [rows] int64."""
  return np.asarray(column.flatten(), dtype=np.int64)


class EncodeDoFn(beam.DoFn):
  """One transformed RecordBatch → one array of serialized examples, plus its counts."""

  def __init__(self, task: str, split: str, chars: bool = False):
    self.task, self.split = task, split
    spec = contract.feature_spec(task, chars)
    self.context_names = list(spec["context"])
    self.sequence_names = list(spec["sequence"])
    self.value_names = list(spec.get("sequence_values", {}))
    self.encode = None

  def setup(self):
    self.encode = Encoder(self.context_names, self.sequence_names, self.value_names)

  def process(self, batch: pa.RecordBatch):
    from pipeline import chars  # pylint: disable=g-import-not-at-top
    from pipeline import transform  # pylint: disable=g-import-not-at-top
    lengths = _scalars(batch.column(contract.LENGTH))
    empty = lengths == 0  # e.g. text of nothing but characters the tokenizer drops
    if empty.any():
      batch = batch.filter(pa.array(~empty))
      lengths = lengths[~empty]
    stats = [
        (counts.key(counts.FILTERED, "empty"), int(empty.sum())),
        (counts.key(counts.EXAMPLES, self.split), len(lengths)),
        (counts.key(counts.TOKENS, self.split), int(lengths.sum())),
    ]
    if batch.num_rows:
      context = {name: _scalars(batch.column(name)) for name in self.context_names}
      sequences = {name: _list_values(batch.column(name)) for name in self.sequence_names}
      sequences.update({name: _nested_list_values(batch.column(name)) for name in self.value_names})
      yield self.encode(context, sequences)
      stats += [
          (counts.TRUNCATED, int(_scalars(batch.column(transform.TRUNCATED)).sum())),
          (counts.key(counts.UNKNOWN, self.split),
           int(np.count_nonzero(sequences[contract.TOKENS][0] == contract.UNK_ID))),
          (counts.key(counts.CHARACTERS, self.split), int(_scalars(batch.column(transform.CHARACTERS)).sum())),
      ]
      if self.value_names:
        stats.append((counts.TRUNCATED_CHARS, int(_scalars(batch.column(chars.CHARS_TRUNCATED)).sum())))
    values, frequencies = np.unique(lengths, return_counts=True)
    stats += [(counts.key(counts.HISTOGRAM, self.split, int(v)), int(n)) for v, n in zip(values, frequencies)]
    for name, n in stats:
      if n:
        counts.inc(name, n)
        yield beam.pvalue.TaggedOutput(counts.COUNTS, (name, n))


class EncodeSequenceExamples(beam.PTransform):
  """Transformed RecordBatches of one split → arrays of serialized SequenceExamples.

  Returns a DoOutputsTuple: main output numpy arrays of bytes, `counts.COUNTS` (name, n)
  pairs.
  """

  def __init__(self, task: str, split: str, chars: bool = False):
    super().__init__()
    self.task, self.split, self.chars = task, split, chars

  def expand(self, record_batches):
    return record_batches | beam.ParDo(EncodeDoFn(self.task, self.split, self.chars)).with_outputs(
        counts.COUNTS, main="serialized")
