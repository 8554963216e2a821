"""The vocabulary analyzer's counting, merging and ordering rules, against Counters."""

import collections
import pickle
import random

import numpy as np
import pytest
import tensorflow as tf

from pipeline import token_counts
from pipeline import vocabulary


def graph_counts(tokens):
  """`count_tokens` on a list of bytes → its three outputs as numpy arrays, as the analyzer gets them."""
  flat = tf.constant(tokens, dtype=tf.string, shape=[len(tokens)])
  return tuple(np.asarray(output) for output in vocabulary.count_tokens(flat))


def brute_force_vocabulary(counter, min_count, top_k):
  """TFT's order by a plain sort: count, then bytes, both descending; cut by min_count and top_k."""
  entries = sorted(((n, token) for token, n in counter.items() if n >= min_count), reverse=True)
  return [token for _, token in entries[:top_k]]


def test_graph_counts_match_a_counter_and_fingerprint_by_bytes_only():
  tokens = [b"a", b"b", b"a", "é".encode(), b"c", b"a", "日本".encode(), "é".encode(), b"\xff"] * 7
  unique, counts, fingerprints = graph_counts(tokens)
  assert unique.dtype == object and counts.dtype == np.int64 and fingerprints.dtype == np.int64
  assert dict(zip(unique.tolist(), counts.tolist())) == collections.Counter(tokens)
  assert len(set(unique.tolist())) == len(unique) == len(set(fingerprints.tolist()))
  assert all(f >= 0 for f in fingerprints.tolist())
  # A token's fingerprint depends on its bytes alone, not on the batch it comes in.
  alone = {token: graph_counts([token])[2][0] for token in set(tokens)}
  assert dict(zip(unique.tolist(), fingerprints.tolist())) == alone


def test_graph_counts_of_an_empty_batch_are_empty():
  unique, counts, fingerprints = graph_counts([])
  assert unique.shape == counts.shape == fingerprints.shape == (0,)
  assert vocabulary.count_batch((unique, counts, fingerprints), 4) == []


def test_partitions_add_up_to_the_batch_counts():
  tokens = [b"a", b"b", b"a", b"c", b"a", "é".encode()] + [str(i).encode() for i in range(300)]
  batch = graph_counts(tokens * 50)
  partitions = vocabulary.count_batch(batch, 7)
  merged = token_counts.merge([counts for _, counts in partitions])
  assert merged.to_dict() == collections.Counter(tokens * 50)
  keys = [key for key, _ in partitions]
  assert len(keys) == len(set(keys)) == 7 and all(0 <= k < 7 for k in keys)
  # Each token is in exactly one partition, the one its fingerprint gives it.
  given = dict(zip(batch[0].tolist(), batch[2].tolist()))
  assert sum(len(counts) for _, counts in partitions) == len(given)
  assert all(given[token] % 7 == key for key, counts in partitions for token in counts.tokens())


def test_order_is_count_then_bytes_descending_with_min_count_and_top_k():
  counter = collections.Counter({b"b": 3, b"a": 3, b"c": 5, b"d": 1, b"e": 2})
  counts = token_counts.from_arrays(list(counter), np.array(list(counter.values())), np.arange(5))
  select = lambda min_count, top_k: token_counts.ordered(token_counts.select(counts, min_count, top_k))
  assert select(1, None) == [b"c", b"b", b"a", b"e", b"d"]
  assert select(2, 3) == [b"c", b"b", b"a"]
  assert select(1, 2) == [b"c", b"b"]  # the tie at the cut goes to the larger bytes
  assert token_counts.ordered(token_counts.select(token_counts.empty(), 1, None)) == []


@pytest.mark.parametrize("seed", range(3))
def test_merge_equals_a_counter_and_never_joins_tokens_that_share_a_fingerprint(seed, monkeypatch):
  monkeypatch.setattr(token_counts, "_CHUNK_BYTES", 5)  # byte steps in many small chunks
  rng = random.Random(seed)
  total, parts = collections.Counter(), []
  for _ in range(rng.randint(2, 6)):
    counter = collections.Counter(bytes(rng.choice(b"ab\x00") for _ in range(rng.randint(0, 6)))
                                  for _ in range(rng.randint(0, 60)))
    total.update(counter)
    # Fingerprints from the length alone: different tokens collide all the time.
    fingerprints = np.array([len(token) % 3 for token in counter], np.uint64)
    parts.append(token_counts.from_arrays(list(counter), np.array(list(counter.values())), fingerprints))
  merged = token_counts.merge(parts)
  assert merged.to_dict() == total and len(merged) == len(total)
  for min_count in (1, 2):
    for top_k in (None, 1, 3, 10):
      assert (token_counts.ordered(token_counts.select(merged, min_count, top_k))
              == brute_force_vocabulary(total, min_count, top_k))


def test_counts_survive_pickling_and_a_merged_result_merges_to_itself():
  """Beam pickles accumulators between stages: counts and lengths past one byte must survive."""
  counter = collections.Counter({b"": 1, b"a": 255, b"b" * 254: 2, b"c" * 255: 300, b"d" * 1000: 1 << 40, b"e": 7})
  parts = [token_counts.from_arrays(list(counter), np.array(list(counter.values())), np.arange(len(counter)))]
  merged = token_counts.merge(parts)
  offset = token_counts.TokenCounts(np.arange(2), np.array([4, 5]), np.array([2, 3, 5]),
                                    np.frombuffer(b"__abc", np.uint8))  # its bytes start past 0
  for counts in (merged, token_counts.empty(), offset):
    restored = pickle.loads(pickle.dumps(counts, protocol=pickle.HIGHEST_PROTOCOL))
    assert restored.to_dict() == counts.to_dict()
    assert restored.fingerprints.tolist() == counts.fingerprints.tolist()
    assert np.diff(restored.offsets).tolist() == np.diff(counts.offsets).tolist()
  assert token_counts.merge([merged]) is merged  # already sorted and distinct: not merged again


def test_combine_fns_prune_each_partition_to_the_global_answer():
  """The analyzer's steps in order, on batches of a corpus where pruning and ties matter."""
  rng = random.Random(0)
  # Zipf-like counts over 3000 distinct tokens: many tie at every count, most are rare.
  corpus = [f"w{int(rng.paretovariate(0.8)) % 3000}".encode() for _ in range(20000)]
  batches = [graph_counts(corpus[i:i + 1500]) for i in range(0, len(corpus), 1500)]
  num_partitions = 5
  merge_fn = vocabulary.MergeCountsFn()
  accumulators = collections.defaultdict(merge_fn.create_accumulator)
  for batch in batches:
    for key, counts in vocabulary.count_batch(batch, num_partitions):
      accumulators[key] = merge_fn.add_input(accumulators[key], counts)
  assert max(len(parts) for parts in accumulators.values()) < 6  # merged as it goes, not per batch
  counter = collections.Counter(corpus)
  for min_count, top_k in ((1, 50), (2, 700), (3, None), (1, 5000)):
    top_fn = vocabulary.TopCountsFn(min_count, top_k)
    kept = top_fn.create_accumulator()
    for parts in accumulators.values():
      pruned = token_counts.select(merge_fn.extract_output(merge_fn.merge_accumulators([parts])), min_count, top_k)
      assert top_k is None or len(pruned) <= top_k
      kept = top_fn.add_input(kept, pruned)
    pairs = top_fn.extract_output(kept)
    assert [token for _, token in pairs] == brute_force_vocabulary(counter, min_count, top_k)
    assert [count for count, _ in pairs] == [counter[token] for _, token in pairs]  # vocab_counts.txt's


def test_partition_count_follows_the_input_unless_given():
  assert vocabulary.partition_count(7, 10 << 40) == 7
  assert vocabulary.partition_count(0, 1) == 1
  assert vocabulary.partition_count(0, 10 * vocabulary.BYTES_PER_PARTITION + 1) == 11
  assert vocabulary.partition_count(0, 1 << 50) == vocabulary.MAX_PARTITIONS


def test_an_uncapped_vocabulary_past_a_million_entries_is_warned_about(caplog):
  vocabulary.warn_if_large("tokens", vocabulary.LARGE_VOCABULARY, None)
  vocabulary.warn_if_large("tokens", vocabulary.LARGE_VOCABULARY + 1, 50_000)  # capped: as asked
  assert not caplog.records
  vocabulary.warn_if_large("tokens", vocabulary.LARGE_VOCABULARY + 1, None)
  (record,) = caplog.records
  assert "--max_vocab" in record.getMessage() and "\n" not in record.getMessage()
