"""WriteShards and WriteDeadLetters: deterministic files, empty shards still written, the same
bytes whether records reach their shards through runs or the runner's shuffle."""

import collections
import json
import os

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
import tensorflow as tf
from apache_beam.runners import create_runner
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
  # Only the runs are left, for the driver to remove with .tmp; no half-written shard.
  assert os.listdir(tmp_path / "a" / write.TEMP_DIR) == [write.RUNS_DIR]


def test_runs_round_trip_and_damage_is_an_error(tmp_path):
  parts = [np.array([b"", b"one", b"\x00two"], dtype=object), np.array([b"three" * 1000], dtype=object)]
  path = str(tmp_path / "a.run")
  write.write_run(path, parts)
  assert write.read_runs([path, path]).tolist() == [b"", b"one", b"\x00two", b"three" * 1000] * 2
  # A run in the shuffle is the file's bytes.
  assert (tmp_path / "a.run").read_bytes() == write.encode_run(parts)
  assert write.decode_runs([write.encode_run(parts), write.encode_run([])]).tolist() == write.read_run(path)
  write.write_run(str(tmp_path / "empty.run"), [])
  assert write.read_runs([str(tmp_path / "empty.run")]).tolist() == []
  data = (tmp_path / "a.run").read_bytes()
  for damaged in (data[:-1], data[:5], data[:30] + bytes([data[30] ^ 1]) + data[31:], data + b"x"):
    (tmp_path / "bad.run").write_bytes(damaged)
    with pytest.raises(IOError, match="not a complete run"):
      write.read_run(str(tmp_path / "bad.run"))


def test_records_are_written_in_runs_of_bounded_size(tmp_path, monkeypatch):
  monkeypatch.setattr(write, "RUN_BYTES", 100)  # DoFns are pickled by value: set before the pipeline
  records = [f"record {i:03d}".encode() for i in range(60)]  # 10 bytes each: a run per 10 records
  shards = write_records(tmp_path, [records[i:i + 5] for i in range(0, 60, 5)], 2)
  assert sorted(r for shard in shards.values() for r in shard) == records
  assert len(os.listdir(tmp_path / write.TEMP_DIR / write.RUNS_DIR)) >= 6


def test_shuffle_writes_the_same_bytes_as_runs_and_no_temporary_file(tmp_path, monkeypatch):
  monkeypatch.setattr(write, "RUN_BYTES", 40)  # several runs per shard, concatenated in the shuffle too
  records = [f"record {i:02d}".encode() for i in range(8)] + [b"", b"record 00"]  # an empty record, a copy
  num_shards = 12  # more shards than records: some stay empty
  per_shard = collections.Counter(shard for shard, part in write.assign_to_shards(records, num_shards)
                                  for _ in part)
  assert len(per_shard) < num_shards and max(per_shard.values()) >= 2
  names = [f"train-{i:05d}-of-{num_shards:05d}.tfrecord" for i in range(num_shards)]
  pipeline = test_pipeline()
  batches = pipeline | beam.Create([records[i:i + 3] for i in range(0, len(records), 3)])
  for shard_writer in (write.RUNS, write.SHUFFLE):
    written = batches | shard_writer >> write.WriteShards(str(tmp_path / shard_writer), "train", num_shards,
                                                          "none", shard_writer)
    assert_that(written, equal_to([(f"shard/{name}", per_shard[i]) for i, name in enumerate(names)]
                                  + [("written/train", n) for n in per_shard.values()]
                                  + [("written/train", 0)] * (num_shards - len(per_shard))),
                label=f"Counts[{shard_writer}]")
  result = pipeline.run()
  result.wait_until_finish()
  runs, shuffled = ({name: (tmp_path / mode / name).read_bytes() for name in names}
                    for mode in (write.RUNS, write.SHUFFLE))
  assert shuffled == runs
  assert [len(list(tf.data.TFRecordDataset(str(tmp_path / write.SHUFFLE / name)))) for name in names] == [
      per_shard[i] for i in range(num_shards)]
  # Runs went through files; the shuffle left none (shards' temporary names are renamed).
  assert len(os.listdir(tmp_path / write.RUNS / write.TEMP_DIR / write.RUNS_DIR)) > len(per_shard)
  assert os.listdir(tmp_path / write.SHUFFLE / write.TEMP_DIR) == []
  counters = {counter.key.metric.name: counter.committed
              for counter in result.metrics().query(beam.metrics.MetricsFilter())["counters"]}
  assert counters["run_files/train"] > len(per_shard) and counters["shuffled_bytes/train"] > sum(map(len, records))


def test_local_runners_write_runs_and_others_shuffle():
  for runner in ("DirectRunner", "FnApiRunner", "BundleBasedDirectRunner", "PrismRunner"):
    assert write.shard_writer_for("auto", create_runner(runner)) == write.RUNS, runner
  for runner in ("DataflowRunner", "FlinkRunner", "SparkRunner", "PortableRunner"):
    assert write.shard_writer_for("auto", create_runner(runner)) == write.SHUFFLE, runner
  assert write.shard_writer_for(write.SHUFFLE, create_runner("FnApiRunner")) == write.SHUFFLE
  assert write.shard_writer_for(write.RUNS, create_runner("DataflowRunner")) == write.RUNS


def test_shard_count_from_the_records_read():
  batch = pa.record_batch([pa.array([b"x" * 1000] * 100, pa.large_binary())], names=["text"])
  with test_pipeline() as p:
    batches = p | beam.Create([batch] * 3)
    assert_that(batches | "Auto" >> write.ShardCount(0),
                equal_to([write.shard_count(0, write.SHARD_BYTES_PER_INPUT_BYTE * 3 * batch.nbytes)]),
                label="auto")
    assert_that(batches | "Given" >> write.ShardCount(7), equal_to([7]), label="given")
  assert write.shard_count(0, 3 * write.TARGET_SHARD_BYTES + 1) == 4


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


def test_dead_letters_merge_from_many_runs_in_passes(tmp_path, monkeypatch):
  monkeypatch.setattr(write, "RUN_BYTES", 300)  # a run every few lines
  monkeypatch.setattr(write, "MERGE_FAN_IN", 3)  # several merge passes
  letters = [{"reason": f"r{i % 3}", "file": "f", "offset": i, "record": f"é{i * 7919 % 100}\n\t\u2028x"}
             for i in range(100)] * 2  # copies stay: every dead letter is kept
  with test_pipeline() as p:
    _ = p | beam.Create(letters, reshuffle=False) | beam.Reshuffle() | write.WriteDeadLetters(str(tmp_path))
  with open(tmp_path / "errors" / write.DEAD_LETTER_FILE, "rb") as f:
    lines = f.read().split(b"\n")
  assert lines.pop() == b""
  expected = sorted(json.dumps(d, ensure_ascii=False, sort_keys=True) for d in letters)
  assert [line.decode("utf-8") for line in lines] == expected
  assert len(os.listdir(tmp_path / write.TEMP_DIR / write.DEAD_LETTER_RUNS_DIR)) > 10


def test_no_dead_letters_is_an_empty_file(tmp_path):
  with test_pipeline() as p:
    _ = p | beam.Create([]) | write.WriteDeadLetters(str(tmp_path))
  assert (tmp_path / "errors" / write.DEAD_LETTER_FILE).read_bytes() == b""
