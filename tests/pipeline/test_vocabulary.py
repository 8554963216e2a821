"""The vocabulary analyzer's counting and ordering rules."""

import collections

import numpy as np

from pipeline import vocabulary


def test_partitions_add_up_to_the_batch_counts():
  tokens = np.array([b"a", b"b", b"a", b"c", b"a", "é".encode()] * 50, dtype=object)
  partitions = list(vocabulary.count_batch((tokens,)))
  merged = vocabulary.merge_counters(counter for _, counter in partitions)
  assert merged == collections.Counter(tokens.tolist())
  keys = [key for key, _ in partitions]
  assert len(keys) == len(set(keys)) and all(0 <= k < vocabulary.NUM_PARTITIONS for k in keys)


def test_order_is_count_then_bytes_descending_with_min_count_and_top_k():
  counts = [collections.Counter({b"b": 3, b"a": 3}), collections.Counter({b"c": 5, b"d": 1, b"e": 2})]
  assert vocabulary.order_vocabulary(counts, min_count=1, top_k=None) == [b"c", b"b", b"a", b"e", b"d"]
  assert vocabulary.order_vocabulary(counts, min_count=2, top_k=3) == [b"c", b"b", b"a"]
  assert vocabulary.order_vocabulary([], min_count=1, top_k=None) == []
