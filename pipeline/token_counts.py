"""Token counts in compact arrays: no Python object per distinct token.

A `TokenCounts` holds n distinct tokens as four numpy arrays: their 64-bit fingerprints
(sorted), their counts, and their bytes end to end in one buffer with n + 1 offsets:

    tokens b"cat" x3, b"a" x1   →   fingerprints [f(b"a"), f(b"cat")] (ascending)
                                    counts       [1, 3]
                                    offsets      [0, 1, 4]
                                    data         b"acat" (as uint8)

about 24 bytes per token plus its bytes, where a `collections.Counter` entry costs several
times that (BENCHMARKS.md, counting state). Counts are merged by concatenation, a sort on
the fingerprint and a sum over each run of equal fingerprints. Two different tokens may share a fingerprint;
they are never merged: where fingerprints are equal the bytes are compared, and tokens
that differ stay apart, ordered by their bytes.

`select` keeps the top k entries at or above a minimum count, ordered as TFT orders a
vocabulary (count, then the token's bytes, both descending).
"""

import heapq
from typing import List, Optional, Sequence, Tuple

import numpy as np

_CHUNK_BYTES = 1 << 22  # whole-array steps over token bytes work on chunks of this size


class TokenCounts:
  """Distinct tokens with counts; see the module docstring for the layout."""

  __slots__ = ("fingerprints", "counts", "offsets", "data")

  def __init__(self, fingerprints: np.ndarray, counts: np.ndarray, offsets: np.ndarray, data: np.ndarray):
    self.fingerprints = fingerprints.astype(np.uint64, copy=False)
    self.counts = counts.astype(np.int64, copy=False)
    self.offsets = offsets.astype(np.int64, copy=False)
    self.data = data.astype(np.uint8, copy=False)

  def __len__(self) -> int:
    return len(self.counts)

  def __reduce__(self):
    # Beam's coders pickle accumulators between stages, and a runner copies a stage's
    # input several times on its way to the worker: counts and token lengths go as one
    # byte each where they fit (most do), not as 8-byte counts and offsets.
    return _unpickle, (self.fingerprints, *_pack(self.counts), *_pack(np.diff(self.offsets)),
                       self.data[self.offsets[0]:self.offsets[-1]])

  @property
  def nbytes(self) -> int:
    return self.fingerprints.nbytes + self.counts.nbytes + self.offsets.nbytes + self.data.nbytes

  def token(self, i: int) -> bytes:
    return self.data[self.offsets[i]:self.offsets[i + 1]].tobytes()

  def tokens(self) -> List[bytes]:
    data, offsets = self.data.tobytes(), self.offsets.tolist()
    return [data[start:end] for start, end in zip(offsets[:-1], offsets[1:])]

  def take(self, indices: np.ndarray) -> "TokenCounts":
    """The entries at `indices`, in that order."""
    starts = self.offsets[:-1][indices]
    lengths = self.offsets[1:][indices] - starts
    offsets, data = gather_ranges(self.data, starts, lengths)
    return TokenCounts(self.fingerprints[indices], self.counts[indices], offsets, data)

  def to_dict(self) -> dict:
    return dict(zip(self.tokens(), self.counts.tolist()))


_BYTE_MAX = 255


def _pack(values: np.ndarray):
  """Non-negative ints → one byte each (capped at 255), and the indices and values of those capped.

  >>> _pack(np.array([3, 300, 255]))
  (array([  3, 255, 255], dtype=uint8), array([1, 2]), array([300, 255]))
  """
  small = np.empty(len(values), np.uint8)
  np.minimum(values, _BYTE_MAX, out=small, casting="unsafe")  # cast chunk by chunk: no 8-byte copy
  capped = np.flatnonzero(small == _BYTE_MAX)
  return small, capped, values[capped]


def _unpack(small: np.ndarray, capped: np.ndarray, values: np.ndarray) -> np.ndarray:
  full = small.astype(np.int64)
  full[capped] = values
  return full


def _unpickle(fingerprints, counts, capped_counts, large_counts, lengths, capped_lengths, long_lengths, data):
  offsets = np.zeros(len(lengths) + 1, np.int64)
  np.cumsum(_unpack(lengths, capped_lengths, long_lengths), out=offsets[1:])
  return TokenCounts(fingerprints, _unpack(counts, capped_counts, large_counts), offsets, data)


def empty() -> TokenCounts:
  return TokenCounts(np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, np.uint8))


def from_arrays(tokens: Sequence[bytes], counts: np.ndarray, fingerprints: np.ndarray) -> TokenCounts:
  """Distinct tokens (bytes), their counts and fingerprints → TokenCounts (not yet sorted)."""
  lengths = np.fromiter(map(len, tokens), np.int64, len(tokens))
  offsets = np.zeros(len(tokens) + 1, np.int64)
  np.cumsum(lengths, out=offsets[1:])
  data = np.frombuffer(b"".join(tokens), np.uint8)
  return TokenCounts(np.asarray(fingerprints), np.asarray(counts), offsets, data)


def gather_ranges(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray):
  """Byte ranges of `data`, end to end → (offsets, new data); in chunks, so the index
  arrays never grow past a few times _CHUNK_BYTES.

  >>> gather_ranges(np.frombuffer(b"abcdef", np.uint8), np.array([4, 0]), np.array([2, 1]))
  (array([0, 2, 3]), array([101, 102,  97], dtype=uint8))
  """
  offsets = np.zeros(len(lengths) + 1, np.int64)
  np.cumsum(lengths, out=offsets[1:])
  out = np.empty(int(offsets[-1]), np.uint8)
  first = 0
  while first < len(lengths):
    last = int(np.searchsorted(offsets, offsets[first] + _CHUNK_BYTES, "right")) - 1
    last = max(last, first + 1)  # at least one range, however long
    chunk = lengths[first:last]
    total = int(chunk.sum())
    within = np.arange(total, dtype=np.int64) - np.repeat(offsets[first:last] - offsets[first], chunk)
    out[offsets[first]:offsets[last]] = data[np.repeat(starts[first:last], chunk) + within]
    first = last
  return offsets, out


def _ranges_equal(data: np.ndarray, starts_a: np.ndarray, starts_b: np.ndarray, lengths: np.ndarray) -> np.ndarray:
  """For pairs of byte ranges of the same length: whether their bytes are equal."""
  equal = np.ones(len(lengths), bool)
  ends = np.cumsum(lengths)
  first = 0
  while first < len(lengths):
    base = ends[first - 1] if first else 0
    last = max(int(np.searchsorted(ends, base + _CHUNK_BYTES, "right")), first + 1)
    chunk = lengths[first:last]
    total = int(chunk.sum())
    if total:
      within = np.arange(total, dtype=np.int64) - np.repeat(ends[first:last] - chunk - base, chunk)
      differ = data[np.repeat(starts_a[first:last], chunk) + within] != data[np.repeat(starts_b[first:last], chunk) + within]
      pair = np.repeat(np.arange(first, last), chunk)
      equal[pair[differ]] = False
    first = last
  return equal


def concat(parts: Sequence[TokenCounts]) -> TokenCounts:
  parts = [part for part in parts if len(part)]
  if not parts:
    return empty()
  if len(parts) == 1:
    return parts[0]
  shifts = np.cumsum([0] + [len(part.data) for part in parts[:-1]])
  offsets = np.concatenate([parts[0].offsets[:1]] + [part.offsets[1:] + shift for part, shift in zip(parts, shifts)])
  return TokenCounts(np.concatenate([part.fingerprints for part in parts]),
                     np.concatenate([part.counts for part in parts]), offsets,
                     np.concatenate([part.data for part in parts]))


def merge(parts: List[TokenCounts]) -> TokenCounts:
  """Sums the counts of the same token across parts (and within one): sorted, distinct.

  The result is sorted by fingerprint, and where different tokens share one, by bytes.
  The list `parts` is emptied, so that each input is freed as soon as it is copied, and
  each array is replaced by its sorted copy one at a time: the peak stays within about
  twice what the inputs hold. Entries whose fingerprints already ascend strictly (one
  part that is a merge's result) are that result as they are: they are returned uncopied.
  """
  merged = concat(parts)
  parts.clear()
  if len(merged) == 0 or np.all(merged.fingerprints[1:] > merged.fingerprints[:-1]):
    return merged
  data = merged.data
  order = np.argsort(merged.fingerprints, kind="stable")  # parts come sorted: runs merge fast
  fingerprints = merged.fingerprints[order]
  merged.fingerprints = None
  starts = merged.offsets[:-1][order]
  lengths = merged.offsets[1:][order]
  merged.offsets = None
  lengths -= starts
  counts = merged.counts[order]
  del merged, order
  # differs[i]: entries i and i + 1 hold different tokens.
  differs = fingerprints[1:] != fingerprints[:-1]
  same = np.flatnonzero(~differs)
  if same.size:
    same_length = lengths[same] == lengths[same + 1]
    equal = same_length.copy()
    candidates = same[same_length]
    equal[same_length] = _ranges_equal(data, starts[candidates], starts[candidates + 1], lengths[candidates])
    differs[same[~equal]] = True
    # A fingerprint shared by different tokens: sort that run by bytes, compare in Python.
    for fingerprint in np.unique(fingerprints[same[~equal]]):
      lo = int(np.searchsorted(fingerprints, fingerprint, "left"))
      hi = int(np.searchsorted(fingerprints, fingerprint, "right"))
      run = sorted((data[s:s + l].tobytes(), i) for i, (s, l) in enumerate(zip(starts[lo:hi], lengths[lo:hi])))
      perm = np.array([i for _, i in run]) + lo
      starts[lo:hi], lengths[lo:hi], counts[lo:hi] = starts[perm], lengths[perm], counts[perm]
      differs[lo:hi - 1] = [a != b for (a, _), (b, _) in zip(run[:-1], run[1:])]
  firsts = np.flatnonzero(differs)
  del differs
  firsts += 1
  firsts = np.concatenate([[0], firsts])
  counts = np.add.reduceat(counts, firsts)
  fingerprints = fingerprints[firsts]
  starts, lengths = starts[firsts], lengths[firsts]
  del firsts
  offsets, data = gather_ranges(data, starts, lengths)
  return TokenCounts(fingerprints, counts, offsets, data)


def select(counts: TokenCounts, min_count: int, top_k: Optional[int]) -> TokenCounts:
  """The `top_k` entries (all if None) with count >= min_count, by count then bytes, both
  descending; returned in their stored order. Only ties at the cut are compared as bytes,
  `top_k` at a time."""
  keep = counts.counts >= min_count
  if top_k is not None and int(keep.sum()) > top_k:
    kept_counts = counts.counts[keep]
    cut = np.partition(kept_counts, len(kept_counts) - top_k)[len(kept_counts) - top_k]  # k-th largest
    del kept_counts
    ties = np.flatnonzero(keep & (counts.counts == cut))
    keep &= counts.counts > cut
    wanted = top_k - int(keep.sum())
    keep[heapq.nlargest(wanted, ties.tolist(), key=counts.token)] = True
  return counts.take(np.flatnonzero(keep))


def ordered(counts: TokenCounts) -> List[bytes]:
  """The tokens most frequent first, ties by their bytes, both descending (TFT's order)."""
  return [token for _, token in ordered_with_counts(counts)]


def ordered_with_counts(counts: TokenCounts) -> List[Tuple[int, bytes]]:
  """(count, token) pairs in `ordered`'s order.

  >>> ordered_with_counts(from_arrays([b"a", b"cat", b"b"], np.array([1, 3, 1]), np.array([7, 8, 9])))
  [(3, b'cat'), (1, b'b'), (1, b'a')]
  """
  return sorted(zip(counts.counts.tolist(), counts.tokens()), reverse=True)
