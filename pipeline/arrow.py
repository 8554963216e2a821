"""Good records → pyarrow RecordBatches, the batches every later stage works on.

Every column is a list (as TFXIO expects) of large_binary UTF-8, plus `split_key`, the
record's stable content hash, which `pipeline.split` reads.

    >>> text_record_batch([b"the cat"]).to_pydict()["text"]
    [[b'the cat']]
"""

import hashlib
import itertools
from typing import List, Sequence

import numpy as np
import pyarrow as pa

import contract
from corpus.records import Record, content_key

BATCH_SIZE = 4096  # records per RecordBatch
SPLIT_KEY = "split_key"  # uint64 column: stable hash of the record's content

_LIST_OF_BYTES = pa.large_list(pa.large_binary())
# What records.content_key hashes after the text of a record that has only text: the
# separators before its (empty) tokens, labels and label.
_TEXT_ONLY_KEY_SUFFIX = b"\x1e" + b"\x1e" + b"\x1e"


def arrow_schema(task: str) -> pa.Schema:
  """Schema of the RecordBatches the reader emits (every column a list, as TFXIO expects)."""
  fields = [(name, _LIST_OF_BYTES) for name in contract.raw_columns(task)]
  return pa.schema(fields + [(SPLIT_KEY, pa.uint64())])


def text_content_keys(lines: Sequence[bytes]) -> np.ndarray:
  """content_key(Record(text=line.decode("utf-8"))) of each UTF-8 line, as uint64s.

  The same hash, computed from the bytes without building a Record or re-encoding text.
  """
  empty = hashlib.blake2b(digest_size=8)
  digests = []
  for line in lines:
    digest = empty.copy()  # cheaper than a new blake2b with its parameters
    digest.update(line)
    digest.update(_TEXT_ONLY_KEY_SUFFIX)
    digests.append(digest.digest())
  return np.frombuffer(b"".join(digests), dtype="<u8").astype(np.uint64, copy=False)


def _utf8_values(strings: List[str]) -> pa.Array:
  """Strings → large_binary of their UTF-8, encoded by Arrow rather than one str.encode each."""
  return pa.array(strings, pa.large_string()).cast(pa.large_binary())


def _list_column(rows: List[Sequence[str]]) -> pa.Array:
  """Lists of strings → a large_list<large_binary> column, built from flat values + offsets.

  [["a", "b"], [], ["c"]] → offsets [0, 2, 2, 3], values [a, b, c].
  """
  offsets = np.zeros(len(rows) + 1, dtype=np.int64)
  np.cumsum(np.fromiter(map(len, rows), dtype=np.int64, count=len(rows)), out=offsets[1:])
  values = _utf8_values(list(itertools.chain.from_iterable(rows)))
  return pa.LargeListArray.from_arrays(pa.array(offsets), values)


def _empty_list_column(num_rows: int) -> pa.Array:
  """_list_column of `num_rows` empty lists."""
  offsets = pa.array(np.zeros(num_rows + 1, dtype=np.int64))
  return pa.LargeListArray.from_arrays(offsets, pa.array([], pa.large_binary()))


def _scalar_column(values: pa.Array) -> pa.Array:
  """One large_binary value per row → a large_list<large_binary> column with lists of one."""
  offsets = pa.array(np.arange(len(values) + 1, dtype=np.int64))
  return pa.LargeListArray.from_arrays(offsets, values)


def to_record_batch(records: List[Record], task: str) -> pa.RecordBatch:
  """Records of `task` → one RecordBatch of `arrow_schema(task)`."""
  builders = {
      "text": lambda: _scalar_column(_utf8_values([r.text for r in records])),
      "tokens": lambda: _list_column([r.tokens for r in records]),
      "labels": lambda: _list_column([r.labels for r in records]),
      "label": lambda: _scalar_column(_utf8_values([r.label for r in records])),
  }
  arrays = [builders[name]() for name in contract.raw_columns(task)]
  arrays.append(pa.array(np.fromiter((content_key(r) for r in records), dtype=np.uint64, count=len(records))))
  return pa.record_batch(arrays, schema=arrow_schema(task))


def text_record_batch(lines: List[bytes]) -> pa.RecordBatch:
  """to_record_batch of text records (task lm), built from the lines' UTF-8 as it is."""
  builders = {
      "text": lambda: _scalar_column(pa.array(lines, pa.large_binary())),
      "tokens": lambda: _empty_list_column(len(lines)),
  }
  arrays = [builders[name]() for name in contract.raw_columns("lm")]
  arrays.append(pa.array(text_content_keys(lines)))
  return pa.record_batch(arrays, schema=arrow_schema("lm"))
