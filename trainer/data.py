"""The input pipeline: shards → interleave → batched parse → bucket → per-replica batches.

    files → interleave(TFRecordDataset) → [shuffle] → batch → parse_sequence_example
          → unbatch → bucket_by_sequence_length(pad_to_bucket_boundary) → split per replica

Nothing model-specific happens here. Buckets use the boundaries the pipeline computed
(exact DP over the train length histogram) and a token budget: a bucket of sequences
padded to length b gets `tokens_per_batch // b` sequences per global batch, a multiple of
the replica count. Each global batch is split into one equal slice per replica, so every
replica in a step sees the same padded shape and the number of distinct shapes is
bounded by the number of buckets (no retracing). A slice is padded up with copies of a
real row that carry weight 0, so no example is dropped and no replica gets an empty batch.
"""

import dataclasses
from typing import Dict, List, Optional, Sequence

import tensorflow as tf

import contract

WEIGHT = "weight"  # float32 per row: 1 for a real example, 0 for a row that fills a slice
PARSE_BATCH = 256  # records per parse_sequence_example call


@dataclasses.dataclass(frozen=True)
class BucketSpec:
  boundaries: List[int]  # bucket i holds lengths in (b(i-1), b(i)], padded to b(i)
  batch_sizes: List[int]  # sequences per bucket per input pipeline, multiples of replicas


def max_length(metadata: dict) -> int:
  lengths = [int(l) for split in metadata["length_histogram"].values() for l in split]
  return max(lengths) if lengths else 1


def bucket_spec(metadata: dict, num_buckets: int, tokens_per_batch: int, replicas: int) -> BucketSpec:
  """Boundaries from metadata.json and token-budget batch sizes for one input pipeline.

  Args:
    metadata: the pipeline's metadata.json.
    num_buckets: one of contract.NUM_BUCKETS_CHOICES.
    tokens_per_batch: padded tokens per batch of this input pipeline.
    replicas: replicas fed by this input pipeline; batch sizes are multiples of it.
  """
  boundaries = list(metadata["bucket_boundaries"][str(num_buckets)]["boundaries"]) or [1]
  longest = max_length(metadata)
  if longest > boundaries[-1]:  # an eval sequence longer than any train one: no drop
    boundaries.append(longest)
  batch_sizes = [max(replicas, (tokens_per_batch // b) // replicas * replicas) for b in boundaries]
  return BucketSpec(boundaries, batch_sizes)


def parse_batch(serialized: tf.Tensor, task: str) -> Dict[str, tf.Tensor]:
  """A batch of serialized SequenceExamples → context and batch-padded sequence features."""
  context_spec, sequence_spec = contract.parsing_spec(task)
  context, sequences, _ = tf.io.parse_sequence_example(serialized, context_spec, sequence_spec)
  return {**context, **sequences}


def _unpad(example: Dict[str, tf.Tensor], task: str) -> Dict[str, tf.Tensor]:
  """Cuts one example's sequence features back to its `length` (parsing padded them)."""
  length = example[contract.LENGTH]
  return {name: value[:length] if name in contract.feature_spec(task)["sequence"] else value
          for name, value in example.items()}


def _fill_and_split(batch: Dict[str, tf.Tensor], replicas: int) -> tf.data.Dataset:
  """[n, ...] → `replicas` slices of [ceil(n / replicas), ...], filled with weight-0 rows."""
  n = tf.shape(batch[contract.TOKENS])[0]
  per_replica = (n + replicas - 1) // replicas
  fill = per_replica * replicas - n
  rows = tf.concat([tf.range(n), tf.zeros([fill], tf.int32)], axis=0)  # copies of row 0
  weights = tf.concat([tf.ones([n]), tf.zeros([fill])], axis=0)
  out = {name: tf.gather(value, rows) for name, value in batch.items()}
  out[WEIGHT] = weights
  return tf.data.Dataset.from_tensor_slices(
      {name: tf.reshape(value, tf.concat([[replicas, per_replica], tf.shape(value)[1:]], 0))
       for name, value in out.items()})


def make_dataset(paths: Sequence[str], task: str, spec: BucketSpec, replicas: int, *,
                 training: bool, compression: Optional[str] = None, seed: int = 0,
                 pipeline_index: int = 0, num_pipelines: int = 1,
                 shuffle_buffer: int = 10_000, skip_batches: int = 0) -> tf.data.Dataset:
  """The dataset of per-replica batches for one input pipeline.

  Args:
    paths: shard files of one split.
    task: lm, tag or classify (which features to parse).
    spec: bucket boundaries and batch sizes for this pipeline.
    replicas: replicas fed by this pipeline; consecutive elements go to replicas 0..R-1.
    training: shuffle and repeat forever; eval reads every example exactly once, in order.
    compression: "GZIP" or None.
    seed: shuffling seed (the order is a function of it).
    pipeline_index, num_pipelines: this worker's share of the files (training only).
    shuffle_buffer: records in the shuffle buffer.
    skip_batches: global batches to skip, to resume a run where it stopped.
  """
  files = tf.data.Dataset.from_tensor_slices(list(paths))
  if training and num_pipelines > 1:
    if len(paths) >= num_pipelines:
      files = files.shard(num_pipelines, pipeline_index)
  if training:
    files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True).repeat()
  records = files.interleave(
      lambda path: tf.data.TFRecordDataset(path, compression_type=compression),
      cycle_length=max(1, min(len(paths), 8)), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if training and num_pipelines > 1 and len(paths) < num_pipelines:
    records = records.shard(num_pipelines, pipeline_index)
  if training:
    records = records.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
  examples = (
      records.batch(PARSE_BATCH)
      .map(lambda serialized: parse_batch(serialized, task), num_parallel_calls=tf.data.AUTOTUNE,
           deterministic=True)
      .unbatch()
      .map(lambda example: _unpad(example, task), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True))
  boundaries = [b + 1 for b in spec.boundaries]  # tf: bucket i holds [b(i-1), b(i)), padded to b(i) - 1
  batches = examples.bucket_by_sequence_length(
      element_length_func=lambda example: tf.cast(example[contract.LENGTH], tf.int32),
      bucket_boundaries=boundaries,
      bucket_batch_sizes=spec.batch_sizes + spec.batch_sizes[-1:],
      pad_to_bucket_boundary=True,
      no_padding=False)
  if skip_batches:
    batches = batches.skip(skip_batches)
  per_replica = batches.flat_map(lambda batch: _fill_and_split(batch, replicas))
  return per_replica.prefetch(tf.data.AUTOTUNE)
