"""The input pipeline: shards → chunks of records → pools parsed at once → token-budget batches.

    files → interleave(TFRecordDataset, in chunks of CHUNK) → [shuffle chunks]
          → pools of POOL → parsed (ragged; trainer/ops, else tf.io.parse_sequence_example)
          → scan: cut each pool into bucketed batches (tensor ops, carrying what is left over)
          → [shuffle the batches of a pool] → filler rows for the replicas (one gather per pool)
          → pad each batch → split per replica

Nothing model-specific happens here, and no op runs per example: a pool of records is
parsed in one call, and its rows are grouped by bucket, cut into batches and gathered with
whole-pool tensor ops. Rows of a bucket that do not fill a batch wait for the next pool
(training) or form a last, smaller batch at the end of the data (eval), so nothing is
dropped. Buckets use the boundaries the pipeline computed (exact DP over the train length
histogram) and a token budget: a bucket of sequences padded to length b gets
`tokens_per_batch // b` sequences per global batch, a multiple of the replica count. A
batch is padded to its bucket's boundary, so the number of distinct shapes is bounded by
the number of buckets, or with `pad_multiple` to its longest row rounded up (see
BucketSpec; the trainer's default is 2, trainer/config.py). Each global batch is split
into one equal slice per replica, so every replica in a step sees the same padded shape. A
batch is filled up to a multiple of the replica count with copies of a real row that carry
weight 0, so no example is dropped and no replica gets an empty batch.

With `chars=True` the CHARS feature list (each token's character ids) travels with its rows
as a second ragged level, [rows, (time), (chars)], and a batch pads it to [rows, width,
char width]: the batch's longest token rounded up like the time axis, or the pipeline's
--max_token_chars with pad_multiple 0 (BucketSpec). Buckets and batch sizes follow the
token count alone, as without chars.
"""

import dataclasses
from typing import Dict, List, Mapping, Optional, Sequence, Union

import tensorflow as tf

import contract
from trainer import ops

WEIGHT = "weight"  # float32 per row: 1 for a real example, 0 for a row that fills a slice
CHUNK = 256  # records per tf.data element before parsing
POOL = 8192  # records parsed and cut into batches together


@dataclasses.dataclass(frozen=True)
class BucketSpec:
  boundaries: List[int]  # bucket i holds lengths in (b(i-1), b(i)], padded to b(i)
  batch_sizes: List[int]  # sequences per bucket per input pipeline, multiples of replicas
  # 0: pad every batch to its bucket's boundary (one shape per bucket). N > 0: pad a batch
  # only to its longest sequence rounded up to a multiple of N (rows of a batch are of
  # like lengths: less padding, at most boundary / N shapes per bucket).
  pad_multiple: int = 0
  # The CHARS axis ([batch, time, chars]) is padded alike: with pad_multiple N to the batch's
  # longest token rounded up to a multiple of N, else to this (the pipeline's --max_token_chars).
  max_token_chars: int = 0


def max_length(metadata: Union[contract.Metadata, Mapping]) -> int:
  """The longest sequence of any split (1 if there are none)."""
  lengths = [length for histogram in contract.Metadata.of(metadata).length_histogram.values() for length in histogram]
  return max(lengths) if lengths else 1


def bucket_spec(metadata: Union[contract.Metadata, Mapping], num_buckets: int, tokens_per_batch: int,
                replicas: int, pad_multiple: int = 0) -> BucketSpec:
  """Boundaries from metadata.json and token-budget batch sizes for one input pipeline.

  Args:
    metadata: the pipeline's metadata.json (`contract.Metadata`, or the dict as read).
    num_buckets: one of contract.NUM_BUCKETS_CHOICES.
    tokens_per_batch: padded tokens per batch of this input pipeline.
    replicas: replicas fed by this input pipeline; batch sizes are multiples of it.
    pad_multiple: see BucketSpec.

  For example, boundaries [4, 8] (and no longer eval sequence), a budget of 64 tokens and 2
  replicas give batch sizes [16, 8]: 64 // 4 = 16 rows of width 4, 64 // 8 = 8 rows of width 8.
  """
  metadata = contract.Metadata.of(metadata)
  boundaries = list(metadata.boundaries(num_buckets))
  longest = max_length(metadata)
  if longest > boundaries[-1]:  # an eval sequence longer than any train one: no drop
    boundaries.append(longest)
  batch_sizes = [max(replicas, (tokens_per_batch // b) // replicas * replicas) for b in boundaries]
  return BucketSpec(boundaries, batch_sizes, pad_multiple, metadata.max_token_chars)


def parse_ragged(serialized: tf.Tensor, task: str, native: Optional[bool] = None,
                 chars: bool = False) -> Dict[str, tf.Tensor]:
  """A batch of serialized SequenceExamples → context [n] and ragged sequence features [n, (length)]
  (CHARS, with `chars`: [n, (length), (chars)]).

  Ragged, not padded to the longest record of the batch: a pool of thousands of records
  with one long outlier would otherwise be copied around at the outlier's width.

  Args:
    serialized: [n] records.
    task: which features to parse (contract.feature_spec).
    native: parse with the op of trainer/ops (less CPU, BENCHMARKS.md); None: with it if it
      can be built and loaded, else with tf.io.parse_sequence_example. Same result.
    chars: also parse the CHARS feature list (the records must hold it).
  """
  context_spec, sequence_spec = contract.parsing_spec(task, chars)
  value_names = [name for name, feature in sequence_spec.items() if isinstance(feature, tf.io.RaggedFeature)]
  if native is None:
    native = ops.available()
  if native:  # checks itself that each step holds one value
    context, rows = ops.parse_token_sequences(
        serialized, list(context_spec), [name for name in sequence_spec if name not in value_names], value_names)
    rows.update(context)
  else:
    ragged_spec = {name: tf.io.RaggedFeature(tf.int64, row_splits_dtype=tf.int64) for name in sequence_spec}
    context, sequences, _ = tf.io.parse_sequence_example(serialized, context_spec, ragged_spec)
    rows = dict(context)
    for name, value in sequences.items():  # [n, (steps), (1 value per step)] → [n, (steps)]
      if name in value_names:  # steps of any number of values: as they are
        rows[name] = value
        continue
      tf.debugging.assert_equal(tf.size(value.flat_values, out_type=tf.int64), value.values.nrows(),
                                message=f"a step of feature list {name} does not hold exactly one value")
      rows[name] = tf.RaggedTensor.from_row_splits(value.flat_values, value.row_splits, validate=False)
  for name in sequence_spec:  # buckets go by `length`: a row longer than it would be cut at the bucket's width
    tf.debugging.assert_equal(rows[name].row_lengths(), rows[contract.LENGTH],
                              message=f"context length differs from the length of feature list {name}")
  return rows


def _no_rows(task: str, chars: bool = False) -> Dict[str, tf.Tensor]:
  """Parsed rows, none of them (parse_sequence_example refuses an empty batch)."""
  context, sequence = contract.parsing_spec(task, chars)
  no_values = tf.RaggedTensor.from_row_splits(tf.zeros([0], tf.int64), tf.zeros([1], tf.int64), validate=False)
  no_steps = tf.RaggedTensor.from_row_splits(no_values, tf.zeros([1], tf.int64), validate=False)
  return {**{name: tf.zeros([0], tf.int64) for name in context},
          **{name: no_steps if isinstance(feature, tf.io.RaggedFeature) else no_values
             for name, feature in sequence.items()}}


def _to_parts(rows: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  """Ragged rows as plain tensors, a tf.data scan state cannot be ragged: (values, row_splits),
  and (values, row_splits, value_splits) for [n, (steps), (values)] (CHARS)."""
  return {name: (value.flat_values, *value.nested_row_splits) if isinstance(value, tf.RaggedTensor) else value
          for name, value in rows.items()}


def _from_parts(parts: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  return {name: tf.RaggedTensor.from_nested_row_splits(value[0], value[1:], validate=False)
          if isinstance(value, tuple) else value for name, value in parts.items()}


def _concat_rows(a: Dict[str, tf.Tensor], b: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  return {name: tf.concat([a[name], b[name]], axis=0) for name in a}


def _gather_rows(rows: Dict[str, tf.Tensor], indices: tf.Tensor) -> Dict[str, tf.Tensor]:
  return {name: tf.gather(value, indices) for name, value in rows.items()}


def _cut_pool(rows: Dict[str, tf.Tensor], flush: tf.Tensor, spec: BucketSpec,
              priority: Optional[tf.Tensor] = None):
  """Groups a pool's rows by bucket and cuts the full batches.

  Within a bucket, rows go out by `priority` (a permutation of the row numbers; by default
  their order in `rows`), and the rest wait. With `spec.pad_multiple`, the rows that go out
  are sorted by length, so each batch is of like lengths and is padded only to its longest.

  Returns (batched, table, left): `batched` holds the rows that go into batches, bucket by
  bucket; row i of `table` is (start, size, width) of batch i in `batched`; `left` holds the
  rows that did not fill a batch (none if `flush`).
  """
  boundaries = tf.constant(spec.boundaries, tf.int64)
  batch_sizes = tf.constant(spec.batch_sizes, tf.int64)
  lengths = rows[contract.LENGTH]
  num_rows = tf.size(lengths, out_type=tf.int64)
  if priority is None:
    priority = tf.range(num_rows)
  bucket = tf.minimum(tf.searchsorted(boundaries, lengths, side="left", out_type=tf.int64),
                      len(spec.boundaries) - 1)
  counts = tf.math.bincount(bucket, minlength=len(spec.boundaries), dtype=tf.int64)
  used = tf.where(flush, counts, counts // batch_sizes * batch_sizes)  # rows of each bucket that go out now
  order = tf.cast(tf.argsort(bucket * num_rows + priority), tf.int64)
  ordered_bucket = tf.gather(bucket, order)
  rank = tf.range(num_rows) - tf.gather(tf.cumsum(counts, exclusive=True), ordered_bucket)
  goes = rank < tf.gather(used, ordered_bucket)
  going = tf.boolean_mask(order, goes)
  if spec.pad_multiple:  # bucket follows length: sorting by length keeps the buckets apart
    going = tf.gather(going, tf.argsort(tf.gather(lengths, going), stable=True))
  # One gather for both parts, then two cheap slices.
  rows = _gather_rows(rows, tf.concat([going, tf.boolean_mask(order, ~goes)], 0))
  num_going = tf.reduce_sum(used)

  num_batches = (used + batch_sizes - 1) // batch_sizes
  batch_bucket = tf.repeat(tf.range(len(spec.boundaries), dtype=tf.int64), num_batches)
  index_in_bucket = tf.range(tf.reduce_sum(num_batches)) - tf.gather(
      tf.cumsum(num_batches, exclusive=True), batch_bucket)
  size = tf.gather(batch_sizes, batch_bucket)
  start = tf.gather(tf.cumsum(used, exclusive=True), batch_bucket) + index_in_bucket * size
  size = tf.minimum(size, tf.gather(used, batch_bucket) - index_in_bucket * size)
  width = tf.gather(boundaries, batch_bucket)
  if spec.pad_multiple:  # the batch's last row is its longest
    longest = tf.gather(rows[contract.LENGTH], start + size - 1)
    width = tf.minimum(width, (longest + spec.pad_multiple - 1) // spec.pad_multiple * spec.pad_multiple)
  table = tf.stack([start, size, width], axis=1)
  return ({name: value[:num_going] for name, value in rows.items()}, table,
          {name: value[num_going:] for name, value in rows.items()})


def _with_fillers(parts: Dict[str, tf.Tensor], table: tf.Tensor, replicas: int):
  """Adds the filler rows that make each batch of a pool divide evenly among the replicas.

  `parts` holds the pool's rows (as `_to_parts`), and row i of `table` is (start, size,
  width) of batch i in them. A batch of `size` rows gets copies of its first row, with
  weight 0, up to a multiple of `replicas`. One gather for the whole pool (none with one
  replica), so that what is left per batch (`_batch_from`) is slicing and padding.

  Returns (parts with WEIGHT, one value per row; table of (start, rows, width)).
  """
  start, size, width = table[:, 0], table[:, 1], table[:, 2]
  if replicas == 1:
    return {**parts, WEIGHT: tf.ones(tf.shape(parts[contract.LENGTH]), tf.float32)}, table
  rows = (size + replicas - 1) // replicas * replicas
  end_row = tf.cumsum(rows)
  first_row = end_row - rows
  row = tf.range(tf.reduce_sum(rows))
  batch = tf.searchsorted(end_row, row, side="right", out_type=tf.int64)  # the batch of each new row
  index = row - tf.gather(first_row, batch)  # its place in the batch
  real = index < tf.gather(size, batch)
  source = tf.gather(start, batch) + tf.where(real, index, tf.zeros_like(index))  # fillers copy the first row
  laid = _to_parts(_gather_rows(_from_parts(parts), source))
  return {**laid, WEIGHT: tf.cast(real, tf.float32)}, tf.stack([first_row, rows, width], axis=1)


def _char_width(value_splits: tf.Tensor, spec: BucketSpec) -> tf.Tensor:
  """The padded CHARS width of a batch whose steps have these value splits (see BucketSpec)."""
  longest = tf.reduce_max(tf.concat([value_splits[1:] - value_splits[:-1], [1]], 0))
  if spec.pad_multiple:
    return (longest + spec.pad_multiple - 1) // spec.pad_multiple * spec.pad_multiple
  return tf.maximum(longest, spec.max_token_chars)


def _batch_from(parts: Dict[str, tf.Tensor], entry: tf.Tensor, replicas: int,
                spec: Optional[BucketSpec] = None) -> Dict[str, tf.Tensor]:
  """Batch (start, rows, width) of a pool's rows (as `_with_fillers`), padded to `width`, as
  [replicas, rows / replicas, ...] tensors; CHARS also padded on its last axis (`_char_width`).

  The batch's rows are contiguous in the pool, so ragged features are sliced, not gathered.
  """
  start, rows, width = entry[0], entry[1], entry[2]
  out = {}
  for name, value in parts.items():
    if isinstance(value, tuple) and len(value) == 3:  # [rows, (steps), (values)]: sliced at both levels
      values, row_splits, value_splits = value
      splits = row_splits[start:start + rows + 1]
      steps = value_splits[splits[0]:splits[-1] + 1]
      ragged = tf.RaggedTensor.from_nested_row_splits(
          values[steps[0]:steps[-1]], (splits - splits[0], steps - steps[0]), validate=False)
      char_width = _char_width(steps, spec or BucketSpec([], []))
      out[name] = tf.reshape(ragged.to_tensor(contract.PAD_ID, shape=tf.stack([rows, width, char_width])),
                             tf.stack([replicas, -1, width, char_width]))
    elif isinstance(value, tuple):  # ragged (values, row_splits): lengths never exceed `width`
      values, row_splits = value
      splits = row_splits[start:start + rows + 1]
      ragged = tf.RaggedTensor.from_row_splits(values[splits[0]:splits[-1]], splits - splits[0], validate=False)
      out[name] = tf.reshape(ragged.to_tensor(contract.PAD_ID, shape=tf.stack([rows, width])),
                             tf.stack([replicas, -1, width]))
    else:
      out[name] = tf.reshape(value[start:start + rows], [replicas, -1])
  return out


def make_dataset(paths: Sequence[str], task: str, spec: BucketSpec, replicas: int, *,
                 training: bool, compression: Optional[str] = None, seed: int = 0,
                 pipeline_index: int = 0, num_pipelines: int = 1,
                 shuffle_buffer: int = 10_000, skip_batches: int = 0, pool: int = POOL,
                 native: Optional[bool] = None, chars: bool = False) -> tf.data.Dataset:
  """The dataset of per-replica batches for one input pipeline.

  Records travel in chunks of CHUNK (tf.data has a cost per element and stage, higher
  across a parallel interleave: BENCHMARKS.md), are parsed a pool at a time, and become
  elements one per replica batch. Training shuffles the files, the chunks (a buffer of
  `shuffle_buffer` records) and the rows of each pool, then the order of a pool's batches.

  Args:
    paths: shard files of one split.
    task: lm, tag or classify (which features to parse).
    spec: bucket boundaries and batch sizes for this pipeline.
    replicas: replicas fed by this pipeline; consecutive elements go to replicas 0..R-1.
    training: shuffle and repeat forever; eval reads every example exactly once, in a fixed order.
    compression: "GZIP" or None.
    seed: shuffling seed (the order is a function of it).
    pipeline_index, num_pipelines: this worker's share of the files (training only).
    shuffle_buffer: records in the shuffle buffer.
    skip_batches: global batches to skip, to resume a run where it stopped.
    pool: records parsed and cut into batches together (a multiple of CHUNK).
    native: how records are parsed (see parse_ragged).
    chars: also batch the CHARS feature list, as [replicas' rows, time, chars] (see BucketSpec).
  """
  if native is None:  # decided (and the op built, if need be) before anything is traced
    native = ops.available()
  files = tf.data.Dataset.from_tensor_slices(list(paths))
  if training and num_pipelines > 1:
    if len(paths) >= num_pipelines:
      files = files.shard(num_pipelines, pipeline_index)
  if training:
    files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True).repeat()
  chunks = files.interleave(
      lambda path: tf.data.TFRecordDataset(path, compression_type=compression).batch(CHUNK),
      cycle_length=max(1, min(len(paths), 8)), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if training and num_pipelines > 1 and len(paths) < num_pipelines:
    chunks = chunks.shard(num_pipelines, pipeline_index)
  if training:
    chunks = chunks.shuffle(max(1, shuffle_buffer // CHUNK), seed=seed, reshuffle_each_iteration=True)
  pools = chunks.ragged_batch(max(1, pool // CHUNK)).map(
      lambda serialized: (parse_ragged(serialized.flat_values, task, native, chars), False),
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  empty = _no_rows(task, chars)
  if not training:  # an empty last pool tells the scan to let out every row it holds
    pools = pools.concatenate(tf.data.Dataset.from_tensors((empty, True)))
  seed = tf.constant(seed, tf.int64)

  def cut(state, parsed_and_flush):
    left, counter = state
    parsed, flush = parsed_and_flush
    rows = _concat_rows(_from_parts(left), parsed)
    priority = None
    if training:  # what waited goes first; the new rows in a random order, a function of (seed, pool)
      num_left = tf.size(left[contract.LENGTH], out_type=tf.int64)
      num_new = tf.size(parsed[contract.LENGTH], out_type=tf.int64)
      shuffled = tf.random.experimental.stateless_shuffle(tf.range(num_new), seed=tf.stack([seed, counter]))
      priority = tf.concat([tf.range(num_left), num_left + shuffled], 0)
    batched, table, left = _cut_pool(rows, flush, spec, priority)
    if training:  # batches of all buckets in a random order
      table = tf.random.experimental.stateless_shuffle(table, seed=tf.stack([counter, seed]))
    return (_to_parts(left), counter + 1), (_to_parts(batched), table)

  cut_pools = pools.scan((_to_parts(empty), tf.constant(0, tf.int64)), cut).map(
      lambda batched, table: _with_fillers(batched, table, replicas), num_parallel_calls=tf.data.AUTOTUNE,
      deterministic=True)
  # One element per batch: (the pool's rows, by reference, and the batch's table entry). The
  # rows stay plain tensors: a ragged element would be decoded whole for every batch.
  entries = cut_pools.flat_map(lambda batched, table: tf.data.Dataset.zip(
      tf.data.Dataset.from_tensors(batched).repeat(), tf.data.Dataset.from_tensor_slices(table)))
  if skip_batches:
    entries = entries.skip(skip_batches)
  batches = entries.map(lambda batched, entry: _batch_from(batched, entry, replicas, spec),
                        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return batches.unbatch().prefetch(tf.data.AUTOTUNE)
