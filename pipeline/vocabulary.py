"""The vocabulary analyzer: token counts per batch, in the graph, merged in hash partitions.

`tft.vocabulary` turns every (token, count) pair of every batch into its own Beam
element: on natural text that is nearly one Python element per token (BENCHMARKS.md),
the largest single cost of the pipeline. Here the graph
counts each batch itself (`tf.unique_with_counts`) and fingerprints each distinct token
(FarmHash, `tf.strings.to_hash_bucket_fast`: stable across processes and machines). The
analyzer receives (distinct tokens, counts, fingerprints) per batch, so Python never
touches a token occurrence:

    CountBatch        a batch → one compact `TokenCounts` per partition it touches
                      (partition = fingerprint % num_partitions)
    MergePartitions   CombinePerKey: each partition's counts, merged as sorted arrays
                      (pipeline/token_counts.py), no Python object per distinct token
    Prune             each partition, once ALL its counts are merged, to its own top
                      `top_k` at or above `min_count`: a token lives in one partition
                      only, so this loses nothing the vocabulary would keep
    TopK              CombineGlobally of the pruned partitions, itself kept to `top_k`
    Write             in TFT's order (count, then the token's bytes, both descending); with
                      `counts_path`, each entry's count too, one per line in the same order

So no worker holds more than one partition's distinct tokens (a share of the corpus
that the number of partitions sets) or, in the global step, about `top_k` entries. The
vocabulary is written as a text asset that `tft.apply_vocabulary` reads like TFT's own.
"""

import logging
import math
import os
import uuid
from typing import List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam

import contract
from pipeline import token_counts
from pipeline.token_counts import TokenCounts

# Automatic number of partitions: one per this many input bytes, so that a partition's
# distinct tokens (what one worker merges) stay about the same as the corpus grows.
BYTES_PER_PARTITION = 256 << 20
MAX_PARTITIONS = 1024  # each batch sends up to this many elements; more costs per batch
# Without --max_vocab, a vocabulary past this many entries is logged as a warning.
LARGE_VOCABULARY = 1_000_000
_FINGERPRINT_BUCKETS = (1 << 63) - 1  # to_hash_bucket_fast: FarmHash Fingerprint64 mod this
# A lookup table cannot be built from an empty file: an empty vocabulary (and the asset
# used while tracing, before analysis) holds this one entry, which no token can equal
# (tokens never contain control characters).
PLACEHOLDER = b"\x00"


def partition_count(requested: int, input_bytes: int) -> int:
  """`requested` if above 0, else one partition per BYTES_PER_PARTITION of input."""
  if requested > 0:
    return requested
  return min(MAX_PARTITIONS, max(1, math.ceil(input_bytes / BYTES_PER_PARTITION)))


def count_tokens(flat_tokens: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """One batch of flat tokens (1-D) → its distinct tokens, their counts and fingerprints.

  Args:
    flat_tokens: a 1-D string tensor, every token occurrence of the batch.

  Returns:
    `(tokens, counts, fingerprints)`, three 1-D tensors of the same length: each distinct
    token once (in order of first occurrence), how often it occurs (int64), and a
    non-negative int64 fingerprint of the token's bytes (the same in every process).
  """
  tokens, _, counts = tf.unique_with_counts(flat_tokens, out_idx=tf.int64)
  return tokens, counts, tf.strings.to_hash_bucket_fast(tokens, _FINGERPRINT_BUCKETS)


def count_batch(batch: Tuple[np.ndarray, ...], num_partitions: int) -> List[Tuple[int, TokenCounts]]:
  """One batch's `count_tokens` output → (partition, its TokenCounts) per partition touched."""
  tokens, counts, fingerprints = batch
  if not len(tokens):
    return []
  partitions = fingerprints % num_partitions
  order = np.lexsort((fingerprints, partitions))  # by partition, then fingerprint
  batch_counts = token_counts.from_arrays(tokens.tolist(), counts, fingerprints).take(order)
  partitions = partitions[order]
  bounds = np.flatnonzero(np.diff(partitions)) + 1
  starts, ends = [0] + bounds.tolist(), bounds.tolist() + [len(partitions)]
  return [(int(partitions[start]), batch_counts.take(np.arange(start, end)))
          for start, end in zip(starts, ends)]


def _settle(parts: List[TokenCounts]) -> List[TokenCounts]:
  """Merges the newest parts while the one before is less than 4x larger: sizes shrink
  geometrically, so parts hold at most about 4/3 of the distinct tokens and each entry
  is merged O(log n) times, never once per batch."""
  while len(parts) >= 2 and len(parts[-2]) < 4 * len(parts[-1]):
    parts.append(token_counts.merge([parts.pop(-2), parts.pop()]))
  return parts


class MergeCountsFn(beam.CombineFn):
  """TokenCounts → their merged TokenCounts. The accumulator is a short list of parts."""

  def create_accumulator(self):
    return []

  def add_input(self, parts, counts):
    parts.append(counts)
    return _settle(parts)

  def merge_accumulators(self, accumulators):
    merged = []
    for parts in accumulators:
      for part in parts:
        merged.append(part)
        _settle(merged)
    return merged

  def compact(self, parts):
    return [token_counts.merge(parts)] if len(parts) > 1 else parts  # merge() empties `parts`

  def extract_output(self, parts):
    return token_counts.merge(parts)


class TopCountsFn(beam.CombineFn):
  """Pruned partitions (disjoint TokenCounts) → the `top_k` entries at or above
  `min_count`, as (count, token) pairs in TFT's order. The accumulator is a list of parts,
  cut back to `top_k` entries whenever it holds twice that."""

  def __init__(self, min_count: int, top_k: Optional[int]):
    self.min_count, self.top_k = min_count, top_k

  def create_accumulator(self):
    return []

  def add_input(self, parts, counts):
    parts.append(counts)
    if self.top_k is not None and sum(map(len, parts)) > 2 * self.top_k:
      parts[:] = [token_counts.select(token_counts.concat(parts), self.min_count, self.top_k)]
    return parts

  def merge_accumulators(self, accumulators):
    merged = []
    for parts in accumulators:
      for part in parts:
        merged = self.add_input(merged, part)
    return merged

  def extract_output(self, parts):
    return token_counts.ordered_with_counts(
        token_counts.select(token_counts.concat(parts), self.min_count, self.top_k))


def warn_if_large(name: str, size: int, top_k: Optional[int]) -> None:
  if top_k is None and size > LARGE_VOCABULARY:
    logging.warning("The %s vocabulary has %d entries (no --max_vocab): an embedding that size is rarely "
                    "wanted; cap it with --max_vocab N (e.g. --max_vocab 100000) or raise --min_count",
                    name, size)


class _CountVocabulary(tft_beam.experimental.PTransformAnalyzer):
  """Batches of (distinct tokens, counts, fingerprints) → the path of a vocabulary file (one element)."""

  def __init__(self, file_name: str, min_count: int, top_k: Optional[int], num_partitions: int,
               counts_path: Optional[str] = None):
    super().__init__()
    self.file_name, self.min_count, self.top_k = file_name, min_count, top_k
    self.num_partitions = num_partitions
    self.counts_path = counts_path

  def expand(self, batches):
    min_count, top_k, counts_path = self.min_count, self.top_k, self.counts_path

    def write(pairs):
      entries = [token for _, token in pairs]
      warn_if_large(self.file_name, len(entries), top_k)
      directory = os.path.join(self.base_temp_dir, uuid.uuid4().hex)
      tf.io.gfile.makedirs(directory)
      path = os.path.join(directory, self.file_name)
      with tf.io.gfile.GFile(path, "wb") as f:
        f.write(b"".join(entry + b"\n" for entry in entries or [PLACEHOLDER]))
      if counts_path:  # the same content whenever it is written: a retried bundle rewrites it alike
        with tf.io.gfile.GFile(counts_path, "w") as f:
          f.write("".join(f"{count}\n" for count, _ in pairs))
      return path.encode("utf-8")

    return (
        batches
        | "CountBatch" >> beam.FlatMap(count_batch, self.num_partitions)
        | "MergePartitions" >> beam.CombinePerKey(MergeCountsFn())
        | "Prune" >> beam.Map(lambda partition: token_counts.select(partition[1], min_count, top_k))
        | "TopK" >> beam.CombineGlobally(TopCountsFn(min_count, top_k))
        | "Write" >> beam.Map(write))


def vocabulary(tokens: tf.RaggedTensor, file_name: str, min_count: int = 1, top_k: Optional[int] = None,
               num_partitions: int = 1, counts_path: Optional[str] = None):
  """Like `tft.vocabulary(tokens, vocab_filename=file_name, ...)`: returns the asset path.

  `num_partitions` (see `partition_count`) spreads the counting over workers; it does
  not change the vocabulary. With `counts_path`, the analysis also writes there the count
  of each entry, one integer per line in the vocabulary's order (not an asset: the
  trainer reads it from OUTPUT_DIR, serving never needs it).
  """
  flat = tokens.flat_values if isinstance(tokens, tf.RaggedTensor) else tf.reshape(tokens, [-1])
  # Each graph run hands the analyzer one tuple of these three arrays; they need not
  # share the batch's first dimension (only transform outputs do).
  (path,) = tft.experimental.ptransform_analyzer(
      inputs=count_tokens(flat), ptransform=_CountVocabulary(file_name, min_count, top_k, num_partitions, counts_path),
      output_dtypes=[tf.string], output_shapes=[[]], output_asset_default_values=[PLACEHOLDER],
      name=f"vocabulary_{file_name}")
  return path


def write_counts(counts_path: str, output_dir: str, reserved: Sequence[int]) -> bool:
  """The counts a `vocabulary(counts_path=...)` analysis wrote → OUTPUT_DIR's VOCAB_COUNTS_FILE,
  line i for id i, after the reserved ids' counts (<pad>, <unk>, ...). False where the
  analysis wrote none."""
  if not tf.io.gfile.exists(counts_path):
    return False
  with tf.io.gfile.GFile(counts_path) as f:
    entries = f.read()
  with tf.io.gfile.GFile(os.path.join(output_dir, contract.VOCAB_COUNTS_FILE), "w") as f:
    f.write("".join(f"{n}\n" for n in reserved) + entries)
  return True
