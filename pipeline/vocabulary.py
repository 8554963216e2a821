"""The vocabulary analyzer: token counts per batch, in the graph, merged in hash partitions.

`tft.vocabulary` turns every (token, count) pair of every batch into its own Beam
element: on natural text that is nearly one Python element per token (1.98 M elements
for 2.2 M tokens, measured), the largest single cost of the pipeline. Here the graph
counts each batch itself (`tf.unique_with_counts`) and gives each distinct token its
partition, one of `NUM_PARTITIONS` buckets of the token's FarmHash fingerprint
(`tf.strings.to_hash_bucket_fast`: stable across processes and machines). The analyzer
receives (distinct tokens, counts, partitions) per batch, so Python never converts or
touches a token occurrence: `count_batch` groups the distinct tokens by partition with
numpy and emits one partial count per partition, so the merge is still distributed
across workers but moves a few dozen elements per batch. The result is ordered as TFT
orders a vocabulary (count, then the token's bytes, both descending), cut by `min_count`
and `top_k`, and written as a text asset that `tft.apply_vocabulary` reads like TFT's own.
"""

import collections
import os
import uuid
from typing import Iterable, List, Optional, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam

NUM_PARTITIONS = 64
# A lookup table cannot be built from an empty file: an empty vocabulary (and the asset
# used while tracing, before analysis) holds this one entry, which no token can equal
# (tokens never contain control characters).
PLACEHOLDER = b"\x00"


def count_tokens(flat_tokens: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """One batch of flat tokens (1-D) → its distinct tokens, their counts and partitions.

  Args:
    flat_tokens: a 1-D string tensor, every token occurrence of the batch.

  Returns:
    `(tokens, counts, partitions)`, three 1-D tensors of the same length: each distinct
    token once (in order of first occurrence), how often it occurs (int64), and its
    partition in [0, NUM_PARTITIONS) (int64), a function of the token's bytes only.
  """
  tokens, _, counts = tf.unique_with_counts(flat_tokens, out_idx=tf.int64)
  return tokens, counts, tf.strings.to_hash_bucket_fast(tokens, NUM_PARTITIONS)


def count_batch(batch: Tuple[np.ndarray, ...]) -> List[Tuple[int, collections.Counter]]:
  """One batch's `count_tokens` output → (partition, Counter) for each partition it touches."""
  tokens, counts, partitions = batch
  order = np.argsort(partitions, kind="stable")
  keys, starts = np.unique(partitions[order], return_index=True)
  tokens, counts = tokens[order].tolist(), counts[order].tolist()
  ends = starts[1:].tolist() + [len(tokens)]
  return [(key, collections.Counter(dict(zip(tokens[start:end], counts[start:end]))))
          for key, start, end in zip(keys.tolist(), starts.tolist(), ends)]


def merge_counters(counters: Iterable[collections.Counter]) -> collections.Counter:
  total = collections.Counter()
  for counter in counters:
    total.update(counter)
  return total


def order_vocabulary(partitions: Iterable[collections.Counter], min_count: int,
                     top_k: Optional[int]) -> List[bytes]:
  """Most frequent first, ties by the token's bytes, both descending (as TFT does)."""
  entries = [(n, token) for counter in partitions for token, n in counter.items() if n >= min_count]
  entries.sort(reverse=True)
  if top_k is not None:
    entries = entries[:top_k]
  return [token for _, token in entries]


class _CountVocabulary(tft_beam.experimental.PTransformAnalyzer):
  """Batches of (distinct tokens, counts, partitions) → the path of a vocabulary file (one element)."""

  def __init__(self, file_name: str, min_count: int, top_k: Optional[int]):
    super().__init__()
    self.file_name, self.min_count, self.top_k = file_name, min_count, top_k

  def expand(self, batches):
    def write(partitions):
      entries = order_vocabulary(partitions, self.min_count, self.top_k)
      directory = os.path.join(self.base_temp_dir, uuid.uuid4().hex)
      tf.io.gfile.makedirs(directory)
      path = os.path.join(directory, self.file_name)
      with tf.io.gfile.GFile(path, "wb") as f:
        f.write(b"".join(entry + b"\n" for entry in entries or [PLACEHOLDER]))
      return path.encode("utf-8")

    return (
        batches
        | "CountBatch" >> beam.FlatMap(count_batch)
        | "MergePartitions" >> beam.CombinePerKey(merge_counters)
        | "Gather" >> beam.Values()
        | "ToList" >> beam.combiners.ToList()
        | "Write" >> beam.Map(write))


def vocabulary(tokens: tf.RaggedTensor, file_name: str, min_count: int = 1, top_k: Optional[int] = None):
  """Like `tft.vocabulary(tokens, vocab_filename=file_name, ...)`: returns the asset path."""
  flat = tokens.flat_values if isinstance(tokens, tf.RaggedTensor) else tf.reshape(tokens, [-1])
  # Each graph run hands the analyzer one tuple of these three arrays; they need not
  # share the batch's first dimension (only transform outputs do).
  (path,) = tft.experimental.ptransform_analyzer(
      inputs=count_tokens(flat), ptransform=_CountVocabulary(file_name, min_count, top_k),
      output_dtypes=[tf.string], output_shapes=[[]], output_asset_default_values=[PLACEHOLDER],
      name=f"vocabulary_{file_name}")
  return path
