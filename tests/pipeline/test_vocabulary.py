"""The vocabulary analyzer's counting and ordering rules."""

import collections

import numpy as np
import tensorflow as tf

from pipeline import vocabulary


def graph_counts(tokens):
  """`count_tokens` on a list of bytes → its three outputs as numpy arrays, as the analyzer gets them."""
  flat = tf.constant(tokens, dtype=tf.string, shape=[len(tokens)])
  return tuple(np.asarray(output) for output in vocabulary.count_tokens(flat))


def test_graph_counts_match_a_counter_and_partition_by_bytes_only():
  tokens = [b"a", b"b", b"a", "é".encode(), b"c", b"a", "日本".encode(), "é".encode(), b"\xff"] * 7
  unique, counts, partitions = graph_counts(tokens)
  assert unique.dtype == object and counts.dtype == np.int64 and partitions.dtype == np.int64
  assert dict(zip(unique.tolist(), counts.tolist())) == collections.Counter(tokens)
  assert len(set(unique.tolist())) == len(unique)
  assert all(0 <= p < vocabulary.NUM_PARTITIONS for p in partitions.tolist())
  # A token's partition depends on its bytes alone, not on the batch it comes in.
  alone = {token: graph_counts([token])[2][0] for token in set(tokens)}
  assert dict(zip(unique.tolist(), partitions.tolist())) == alone


def test_graph_counts_of_an_empty_batch_are_empty():
  unique, counts, partitions = graph_counts([])
  assert unique.shape == counts.shape == partitions.shape == (0,)
  assert vocabulary.count_batch((unique, counts, partitions)) == []


def test_partitions_add_up_to_the_batch_counts():
  tokens = [b"a", b"b", b"a", b"c", b"a", "é".encode()] + [str(i).encode() for i in range(300)]
  batch = graph_counts(tokens * 50)
  partitions = vocabulary.count_batch(batch)
  merged = vocabulary.merge_counters(counter for _, counter in partitions)
  assert merged == collections.Counter(tokens * 50)
  keys = [key for key, _ in partitions]
  assert len(keys) == len(set(keys)) and all(0 <= k < vocabulary.NUM_PARTITIONS for k in keys)
  assert len(keys) > 1
  # Each token is in exactly one partition, the one the graph gave it.
  given = dict(zip(batch[0].tolist(), batch[2].tolist()))
  assert sum(len(counter) for _, counter in partitions) == len(given)
  assert all(given[token] == key for key, counter in partitions for token in counter)


def test_order_is_count_then_bytes_descending_with_min_count_and_top_k():
  counts = [collections.Counter({b"b": 3, b"a": 3}), collections.Counter({b"c": 5, b"d": 1, b"e": 2})]
  assert vocabulary.order_vocabulary(counts, min_count=1, top_k=None) == [b"c", b"b", b"a", b"e", b"d"]
  assert vocabulary.order_vocabulary(counts, min_count=2, top_k=3) == [b"c", b"b", b"a"]
  assert vocabulary.order_vocabulary([], min_count=1, top_k=None) == []
