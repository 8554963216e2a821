"""Statistics: counts gathered in the pipeline, optimal bucket boundaries, metadata.json.

`optimal_bucket_boundaries` is an exact dynamic programme over the length histogram:
with K buckets, where bucket i holds lengths in (b(i-1), b(i)] and is padded to b(i),
it finds the boundaries that minimise the number of padded slots. Quantiles do not: a
quantile bucket is as wide as the data is sparse, and pads everything in it to its top.
"""

import json
import platform
from typing import Dict, List, Mapping, Sequence

import apache_beam as beam
import numpy as np
import tensorflow as tf

import contract
from pipeline import counts


def padded_slots(histogram: Mapping[int, int], boundaries: Sequence[int]) -> int:
  """Slots after padding each length up to the smallest boundary that holds it."""
  bounds = np.asarray(sorted(boundaries))
  lengths = np.asarray(list(histogram), dtype=np.int64)
  frequencies = np.asarray(list(histogram.values()), dtype=np.int64)
  if lengths.size == 0:
    return 0
  if lengths.max() > bounds[-1]:
    raise ValueError(f"length {lengths.max()} is above the last boundary {bounds[-1]}")
  padded_to = bounds[np.searchsorted(bounds, lengths, side="left")]
  return int((padded_to * frequencies).sum())


def padding_waste(histogram: Mapping[int, int], boundaries: Sequence[int]) -> float:
  """Padded slots / all slots when padding to the boundaries."""
  slots = padded_slots(histogram, boundaries)
  real = sum(length * n for length, n in histogram.items())
  return (slots - real) / slots if slots else 0.0


def optimal_bucket_boundaries(histogram: Mapping[int, int], num_buckets: int) -> List[int]:
  """Boundaries b1 < ... < bK (K <= num_buckets) that minimise padded slots, exactly.

  Each boundary is one of the lengths present and the last is the maximum length. With
  n distinct lengths the programme costs O(num_buckets * n^2), vectorised over one n.
  """
  lengths = np.asarray(sorted(l for l, n in histogram.items() if n > 0), dtype=np.int64)
  n = lengths.size
  if n <= num_buckets:
    return [int(l) for l in lengths]
  frequencies = np.asarray([histogram[int(l)] for l in lengths], dtype=np.int64)
  cumulative = np.concatenate([[0], np.cumsum(frequencies)])  # cumulative[j]: first j lengths
  unreachable = np.iinfo(np.int64).max // 4
  # best[j]: fewest slots covering the first j distinct lengths with k buckets so far.
  best = np.full(n + 1, unreachable, dtype=np.int64)
  best[0] = 0
  previous_end = np.zeros((num_buckets + 1, n + 1), dtype=np.int64)
  for k in range(1, num_buckets + 1):
    current = np.full(n + 1, unreachable, dtype=np.int64)
    for j in range(k, n + 1):
      # Last bucket covers distinct lengths i..j-1, padded to lengths[j-1].
      candidates = best[:j] + lengths[j - 1] * (cumulative[j] - cumulative[:j])
      i = int(np.argmin(candidates))
      current[j], previous_end[k, j] = candidates[i], i
    best = current
  boundaries, j = [], n
  for k in range(num_buckets, 0, -1):
    boundaries.append(int(lengths[j - 1]))
    j = int(previous_end[k, j])
  return boundaries[::-1]


def bucket_table(histogram: Mapping[int, int]) -> Dict[str, dict]:
  table = {}
  for k in contract.NUM_BUCKETS_CHOICES:
    boundaries = optimal_bucket_boundaries(histogram, k)
    table[str(k)] = {"boundaries": boundaries,
                     "padding_waste": round(padding_waste(histogram, boundaries), 6) if boundaries else 0.0}
  return table


class GatherCounts(beam.PTransform):
  """(name, n) pairs → one JSON file {name: total}."""

  def __init__(self, path: str):
    super().__init__()
    self.path = path

  def expand(self, pairs):
    def write(totals):
      with tf.io.gfile.GFile(self.path, "w") as f:
        json.dump(dict(sorted(totals.items())), f)

    return (
        pairs
        | "Sum" >> beam.CombinePerKey(sum)
        | "ToDict" >> beam.combiners.ToDict()
        | "Write" >> beam.Map(write))


def _by_prefix(totals: Mapping[str, int], prefix: str) -> Dict[str, int]:
  prefix += "/"
  return {name[len(prefix):]: n for name, n in sorted(totals.items()) if name.startswith(prefix)}


def summarize(totals: Mapping[str, int], splits: Sequence[str] = contract.TRAINING_SPLITS) -> dict:
  """The `counts`, `splits`, `length_histogram` and `unk_rate` parts of metadata.json, for
  the splits written."""
  written = _by_prefix(totals, counts.WRITTEN)
  summary = {
      "counts": {
          "read": totals.get(counts.READ, 0),
          "written": sum(written.values()),
          "filtered": _by_prefix(totals, counts.FILTERED),
          "dead_letter": _by_prefix(totals, counts.DEAD_LETTER),
          "truncated": totals.get(counts.TRUNCATED, 0),
      },
      "splits": {},
      "length_histogram": {},
      "unk_rate": {},
  }
  shards = _by_prefix(totals, counts.SHARD)
  for split in splits:
    histogram = {int(length): n for length, n in _by_prefix(totals, f"{counts.HISTOGRAM}/{split}").items()}
    summary["length_histogram"][split] = {str(l): histogram[l] for l in sorted(histogram)}
    summary["splits"][split] = {
        "examples": written.get(split, 0),
        "tokens": totals.get(counts.key(counts.TOKENS, split), 0),
        "characters": totals.get(counts.key(counts.CHARACTERS, split), 0),
        "shards": [{"file": name, "examples": n} for name, n in sorted(shards.items())
                   if name.startswith(split + "-")],
    }
    tokens = summary["splits"][split]["tokens"]
    summary["unk_rate"][split] = totals.get(counts.key(counts.UNKNOWN, split), 0) / tokens if tokens else 0.0
  return summary


def check_identity(summary: dict) -> None:
  """read == written + filtered + dead_letter, exactly; else the pipeline lost records."""
  c = summary["counts"]
  accounted = c["written"] + sum(c["filtered"].values()) + sum(c["dead_letter"].values())
  if c["read"] != accounted:
    raise RuntimeError(f"records unaccounted for: read {c['read']} != written {c['written']} + "
                       f"filtered {c['filtered']} + dead_letter {c['dead_letter']}")


def versions() -> dict:
  import tensorflow_transform  # pylint: disable=g-import-not-at-top
  return {"python": platform.python_version(), "tensorflow": tf.__version__,
          "tensorflow_transform": tensorflow_transform.__version__, "apache_beam": beam.__version__,
          "format_version": contract.FORMAT_VERSION}
