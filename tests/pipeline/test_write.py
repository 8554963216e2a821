"""WriteShards and WriteDeadLetters: deterministic files, empty shards still written."""

import json
import os

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.testing.util import assert_that, equal_to

from pipeline import write
from tests.pipeline.beam_testing import test_pipeline


def write_records(output_dir, batches, num_shards):
  with test_pipeline() as p:
    written = p | beam.Create(batches) | write.WriteShards(str(output_dir), "train", num_shards, "none")
    names = [f"train-{i:05d}-of-{num_shards:05d}.tfrecord" for i in range(num_shards)]
    assert_that(written | beam.Filter(lambda kv: kv[0] == "written/train") | beam.CombinePerKey(sum),
                equal_to([("written/train", sum(len(b) for b in batches))]))
  return {n: list(tf.data.TFRecordDataset(str(output_dir / n)).as_numpy_iterator()) for n in names}


def test_shards_do_not_depend_on_batching_or_input_order(tmp_path):
  records = [f"record {i}".encode() for i in range(50)]
  first = write_records(tmp_path / "a", [records[:20], records[20:]], 4)
  second = write_records(tmp_path / "b", [records[::-1][:7], records[::-1][7:]], 4)
  assert first == second
  assert sorted(r for shard in first.values() for r in shard) == sorted(records)
  assert not os.listdir(tmp_path / "a" / write.TEMP_DIR)


def test_records_sort_by_key_then_bytes():
  keys = np.array([5, 3, 5, 5, 9, 3, 7, 7, 5], np.uint64)  # 3 and 5: collisions; 7: two copies
  records = np.array([b"c", b"y", b"a", b"b", b"z", b"x", b"w", b"w", b"a"], dtype=object)
  assert records[write.record_order(keys, records)].tolist() == [
      b"x", b"y", b"a", b"a", b"b", b"c", b"w", b"w", b"z"]


def test_sort_keys_are_stable_fingerprints():
  keys = write.sort_keys(np.array([b"a", b"b", b"a"], dtype=object))
  assert keys.dtype == np.uint64 and keys[0] == keys[2] != keys[1]
  assert keys.tolist() == write.sort_keys([b"a", b"b", b"a"]).tolist()  # a list works the same


def test_empty_shards_are_written(tmp_path):
  shards = write_records(tmp_path, [[b"only one"]], 3)
  assert sorted(len(records) for records in shards.values()) == [0, 0, 1]


def test_dead_letters_sorted_jsonl(tmp_path):
  letters = [{"reason": "b", "file": "f", "offset": 2, "record": "y"},
             {"reason": "a", "file": "f", "offset": 1, "record": "x"}]
  with test_pipeline() as p:
    counted = p | beam.Create(letters) | write.WriteDeadLetters(str(tmp_path))
    assert_that(counted, equal_to([("dead_letter/a", 1), ("dead_letter/b", 1)]))
  with open(tmp_path / "errors" / write.DEAD_LETTER_FILE, encoding="utf-8") as f:
    assert [json.loads(line)["reason"] for line in f] == ["a", "b"]
