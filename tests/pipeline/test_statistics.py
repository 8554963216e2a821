"""The optimal-boundary DP against brute force, padding waste, and the count identity."""

import itertools
import random

import pytest

from pipeline import statistics


def brute_force_slots(histogram, num_buckets):
  lengths = sorted(histogram)
  best = None
  for k in range(1, min(num_buckets, len(lengths)) + 1):
    for inner in itertools.combinations(lengths[:-1], k - 1):
      slots = statistics.padded_slots(histogram, list(inner) + [lengths[-1]])
      best = slots if best is None else min(best, slots)
  return best


@pytest.mark.parametrize("seed", range(25))
def test_dp_matches_brute_force(seed):
  rng = random.Random(seed)
  histogram = {rng.randint(1, 40): rng.randint(1, 50) for _ in range(rng.randint(1, 9))}
  for num_buckets in (1, 2, 3, 4):
    boundaries = statistics.optimal_bucket_boundaries(histogram, num_buckets)
    assert boundaries == sorted(set(boundaries)) and len(boundaries) <= num_buckets
    assert boundaries[-1] == max(histogram)
    assert statistics.padded_slots(histogram, boundaries) == brute_force_slots(histogram, num_buckets)


def test_dp_beats_quantiles_on_a_skewed_histogram():
  histogram = {**{l: 1000 for l in range(1, 21)}, 200: 5, 400: 1}
  boundaries = statistics.optimal_bucket_boundaries(histogram, 4)
  assert boundaries[-1] == 400
  assert statistics.padding_waste(histogram, boundaries) < statistics.padding_waste(histogram, [5, 10, 15, 400])


def test_padding_waste_and_few_lengths():
  assert statistics.optimal_bucket_boundaries({3: 2, 7: 1}, 16) == [3, 7]
  assert statistics.padding_waste({3: 2, 7: 1}, [3, 7]) == 0.0
  assert statistics.padding_waste({1: 1, 3: 1}, [3]) == pytest.approx(2 / 6)
  assert statistics.optimal_bucket_boundaries({}, 4) == []


def test_identity_check_catches_lost_records():
  totals = {"read": 5, "written/train": 3, "filtered/empty": 1, "dead_letter/bad_json": 1,
            "length/train/2": 3, "shard/train-00000-of-00001.tfrecord": 3}
  summary = statistics.summarize(totals)
  statistics.check_identity(summary)
  assert summary["splits"]["train"]["shards"] == [{"file": "train-00000-of-00001.tfrecord", "examples": 3}]
  totals["read"] = 6
  with pytest.raises(RuntimeError, match="unaccounted"):
    statistics.check_identity(statistics.summarize(totals))
