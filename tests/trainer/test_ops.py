"""The native record parser against the protobuf library and tf.io.parse_sequence_example.

The pipeline's real records parse to the same tensors as with tf.io.parse_sequence_example.
Hand-written wire data, and damaged copies of a record, are read as the protobuf library
reads them (TF's parser is no reference there: it refuses some valid encodings, such as a
map entry with its value before its key, and accepts field number 0).
"""

import random

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import message

import contract
from trainer import data
from trainer import ops

KEYS = ([contract.LENGTH], [contract.TOKENS, contract.LABELS], [contract.CHARS])

# Only a machine without a compiler (and without a build copied in) may skip the op's tests:
# where a compiler exists, a build that fails is a failure (test_the_op_builds_...).
needs_op = pytest.mark.skipif(ops.compiler() is None and not ops.available(), reason="no C++ compiler, no build")


def _protobuf(serialized: bytes):
  """The protobuf library's reading of one record under the layout's rules (one int64 per
  context key and per step of tokens and labels, any number of int64s per step of chars, a
  Feature of no kind holding none): (context, values, row_lengths) or "refused"."""
  try:
    example = tf.train.SequenceExample.FromString(serialized)
  except message.DecodeError:
    return "refused"
  context = {}
  for key in KEYS[0]:
    feature = example.context.feature.get(key)
    if feature is None or feature.WhichOneof("kind") != "int64_list" or len(feature.int64_list.value) != 1:
      return "refused"
    context[key] = [feature.int64_list.value[0]]
  values, lengths = {}, {}
  for key in KEYS[1]:
    steps = example.feature_lists.feature_list[key].feature if key in example.feature_lists.feature_list else []
    if any(step.WhichOneof("kind") != "int64_list" or len(step.int64_list.value) != 1 for step in steps):
      return "refused"
    values[key] = [step.int64_list.value[0] for step in steps]
    lengths[key] = [len(steps)]
  for key in KEYS[2]:
    steps = example.feature_lists.feature_list[key].feature if key in example.feature_lists.feature_list else []
    if any(step.WhichOneof("kind") not in (None, "int64_list") for step in steps):
      return "refused"
    values[key] = [list(step.int64_list.value) for step in steps]
    lengths[key] = [len(steps)]
  return context, values, lengths


def _native(serialized: bytes):
  try:
    context, sequences = ops.parse_token_sequences(tf.constant([serialized]), *KEYS)
  except tf.errors.InvalidArgumentError:
    return "refused"
  return ({key: context[key].numpy().tolist() for key in KEYS[0]},
          {**{key: sequences[key].flat_values.numpy().tolist() for key in KEYS[1]},
           **{key: sequences[key].to_list()[0] for key in KEYS[2]}},
          {key: sequences[key].row_lengths().numpy().tolist() for key in KEYS[1] + KEYS[2]})


def _record(tokens, labels, chars=()) -> tf.train.SequenceExample:
  example = tf.train.SequenceExample()
  example.context.feature[contract.LENGTH].int64_list.value.append(len(tokens))
  for name, values in ((contract.TOKENS, tokens), (contract.LABELS, labels)):
    for value in values:
      example.feature_lists.feature_list[name].feature.add().int64_list.value.append(value)
  for values in chars:
    example.feature_lists.feature_list[contract.CHARS].feature.add().int64_list.value.extend(values)
  return example


def _field(number: int, payload: bytes) -> bytes:
  """A length-delimited protobuf field."""
  return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
  out = bytearray()
  while True:
    out.append(value & 0x7F | (0x80 if value > 0x7F else 0))
    value >>= 7
    if not value:
      return bytes(out)


def test_the_op_builds_and_loads_where_there_is_a_compiler():
  if ops.compiler() is None:
    pytest.skip("no C++ compiler")
  try:
    path = ops.build()
  except ops.BuildError as error:  # fail, not skip: the trainer would silently parse with more CPU
    pytest.fail(f"the native parser does not build with {ops.compiler()}: {error}")
  assert path.name == ops.library_name()
  assert ops.available(), "the op built but did not load (see the warning logged by trainer.ops.load)"


def test_without_the_op_the_trainer_parses_with_tf(monkeypatch, tmp_path, caplog):
  broken = tmp_path / "parse_token_sequences.cc"
  broken.write_text("this is not C++\n")
  monkeypatch.setattr(ops, "SOURCE", broken)
  monkeypatch.setattr(ops, "_directories", lambda: [tmp_path])
  ops.load.cache_clear()
  try:
    if ops.compiler() is not None:
      with pytest.raises(ops.BuildError, match="exited"):
        ops.build()
    assert ops.load() is None
    assert "parsed by tf.io.parse_sequence_example" in caplog.text
    assert not list(tmp_path.glob("*.so*"))  # nothing half-built is left
    serialized = tf.constant([_record([4, 5], [2, 3]).SerializeToString()])
    rows = data.parse_ragged(serialized, "tag")  # the default falls back
    assert rows[contract.TOKENS].to_list() == [[4, 5]] and rows[contract.LABELS].to_list() == [[2, 3]]
    monkeypatch.undo()
    monkeypatch.setenv(ops.DISABLE_ENV, "0")  # with a working build, the switch still turns it off
    ops.load.cache_clear()
    assert ops.load() is None
  finally:
    monkeypatch.undo()
    ops.load.cache_clear()


def test_the_build_name_follows_tensorflow_not_where_it_is_installed(monkeypatch):
  name = ops.library_name()
  compile_flags, link_flags = ops._flags()  # pylint: disable=protected-access
  moved = ([f.replace("/", "/elsewhere/", 1) if f.startswith("-I") else f for f in compile_flags],
           [f.replace("/", "/elsewhere/", 1) if f.startswith("-L") else f for f in link_flags])
  assert moved != (compile_flags, link_flags)
  monkeypatch.setattr(ops, "_flags", lambda: moved)
  assert ops.library_name() == name  # a build copied to another venv of the same TensorFlow is found
  monkeypatch.setattr(ops, "_flags", lambda: (moved[0] + ["-DOTHER"], moved[1]))
  assert ops.library_name() != name


@needs_op
def test_native_and_tf_parse_the_pipelines_records_alike(demo_tag_data):
  metadata = contract.read_metadata(demo_tag_data)
  paths = contract.shard_paths(demo_tag_data, metadata, "train")
  serialized = tf.concat(list(tf.data.TFRecordDataset(paths).batch(1000)), 0)
  native = data.parse_ragged(serialized, "tag", native=True, chars=True)
  parsed = data.parse_ragged(serialized, "tag", native=False, chars=True)
  assert set(native) == set(parsed) == {contract.LENGTH, contract.TOKENS, contract.LABELS, contract.CHARS}
  np.testing.assert_array_equal(native[contract.LENGTH], parsed[contract.LENGTH])
  for name in (contract.TOKENS, contract.LABELS, contract.CHARS):
    assert native[name].ragged_rank == parsed[name].ragged_rank == (2 if name == contract.CHARS else 1)
    np.testing.assert_array_equal(native[name].flat_values, parsed[name].flat_values)
    for native_splits, parsed_splits in zip(native[name].nested_row_splits, parsed[name].nested_row_splits):
      np.testing.assert_array_equal(native_splits, parsed_splits)
  assert int(tf.size(native[contract.TOKENS].values)) == metadata["splits"]["train"]["tokens"]
  assert int(tf.reduce_min(native[contract.CHARS].flat_values)) >= contract.UNK_ID  # no padding in a record
  without = data.parse_ragged(serialized, "tag", native=True)  # records with chars, parsed without them
  assert contract.CHARS not in without and without[contract.TOKENS].to_list() == native[contract.TOKENS].to_list()


@needs_op
def test_wire_variants_protobuf_accepts_parse_alike():
  record = _record([5, 300, 2 ** 40], [2, 3, 4], [[4, 5], [2 ** 40], list(range(200))])
  feature = lambda *values: _field(3, _field(1, b"".join(_varint(v) for v in values)))  # packed int64_list
  unpacked = _field(3, b"".join(b"\x08" + _varint(v) for v in (7,)))  # int64_list, value unpacked
  entry = lambda key, value: _field(1, _field(1, key.encode()) + _field(2, value))
  steps = lambda *features: b"".join(_field(1, f) for f in features)
  variants = {
      "as written": record.SerializeToString(deterministic=True),
      "feature lists before the context, entries value first": (
          _field(2, _field(1, _field(2, steps(feature(4), unpacked)) + _field(1, b"tokens")))
          + _field(1, entry("length", feature(2)))),
      "unknown fields everywhere": (
          b"\x18\x05" + _field(7, b"junk") + _field(1, entry("other", feature(1)) + entry("length", feature(1))
                                                   + b"\x2d\x01\x02\x03\x04")
          + _field(2, entry("tokens", steps(_field(3, b"\x10\x01" + _field(1, _varint(9))))))),
      "a key given twice: the last wins": (
          _field(1, entry("length", feature(9)) + entry("length", feature(1)))
          + _field(2, entry("tokens", steps(feature(1), feature(2))) + entry("tokens", steps(feature(3))))),
      "no feature lists": _field(1, entry("length", feature(3))),
      "a value given twice in an entry: the two merge": _field(1, entry("length", feature(2))) + _field(2, _field(
          1, _field(1, b"tokens") + _field(2, steps(feature(6))) + _field(2, steps(feature(7))))),
      "another key's value, damaged": _field(1, entry("length", feature(1)) + entry("other", b"\x1a\x05\x0a")),
      "a negative value": _field(1, entry("length", feature(1))) + _field(2, entry("tokens", steps(
          _field(3, _field(1, _varint(2 ** 64 - 5)))))),
      "a step of two values": _field(1, entry("length", feature(1))) + _field(2, entry("tokens", steps(feature(1, 2)))),
      "a step of none": _field(1, entry("length", feature(1))) + _field(2, entry("tokens", steps(b""))),
      "a float step": _field(1, entry("length", feature(1))) + _field(2, entry("tokens", steps(
          _field(2, _field(1, b"\x00\x00\x80\x3f"))))),
      "no length": _field(2, entry("tokens", steps(feature(1)))),
      "a bytes length": _field(1, entry("length", _field(1, _field(1, b"3")))),
      "a group (obsolete, skipped)": b"\x1b\x08\x01\x1c" + record.SerializeToString(),
      "field number 0": b"\x02\x00" + record.SerializeToString(),
      "a key that is not UTF-8": _field(1, entry("length", feature(1)) + _field(1, _field(1, b"\xff"))),
      "an end-group tag alone": record.SerializeToString() + b"\x1c",
      "chars of several values, packed and unpacked, one step of none": _field(1, entry("length", feature(3)))
      + _field(2, entry("chars", steps(feature(4, 5, 6), _field(3, b"\x08\x07\x08\x08"), _field(3, b""))))
      + _field(2, entry("tokens", steps(feature(1), feature(2), feature(3)))),
      "a chars step of a Feature of no kind": _field(1, entry("length", feature(1))) + _field(2, entry(
          "chars", steps(b""))),
      "a chars step given as floats, then as int64s: the last kind wins": _field(1, entry("length", feature(1)))
      + _field(2, entry("chars", steps(_field(2, _field(1, b"\x00\x00\x80\x3f")) + _field(3, _field(1, b"\x09"))))),
      "a chars step of bytes": _field(1, entry("length", feature(1))) + _field(2, entry("chars", steps(
          _field(1, _field(1, b"ab"))))),
      "a chars step of floats": _field(1, entry("length", feature(1))) + _field(2, entry("chars", steps(
          _field(2, _field(1, b"\x00\x00\x80\x3f"))))),
  }
  results = {name: (_protobuf(serialized), _native(serialized)) for name, serialized in variants.items()}
  assert {name: native for name, (_, native) in results.items()} == {
      name: reference for name, (reference, _) in results.items()}
  assert results["as written"][1] == (
      {"length": [3]}, {"tokens": [5, 300, 2 ** 40], "labels": [2, 3, 4], "chars": [[4, 5], [2 ** 40], list(range(200))]},
      {"tokens": [3], "labels": [3], "chars": [3]})
  assert results["chars of several values, packed and unpacked, one step of none"][1][1]["chars"] == [
      [4, 5, 6], [7, 8], []]
  assert results["a chars step given as floats, then as int64s: the last kind wins"][1][1]["chars"] == [[9]]
  assert results["a key given twice: the last wins"][1][1]["tokens"] == [3]
  assert results["a negative value"][1][1]["tokens"] == [-5]
  assert results["a value given twice in an entry: the two merge"][1][1]["tokens"] == [6, 7]
  for name in ("a step of two values", "a step of none", "a float step", "no length", "a bytes length",
               "field number 0", "a key that is not UTF-8", "an end-group tag alone",
               "another key's value, damaged", "a chars step of bytes", "a chars step of floats"):
    assert results[name][1] == "refused", name


@needs_op
def test_damaged_records_are_refused_or_read_as_protobuf_reads_them():
  serialized = _record([3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2, 8, 1, 8],
                       [[5, 3], [5], [8, 9, 7, 9], [3], [2, 3, 8, 4], [6], [2, 6], [4, 3]]).SerializeToString(deterministic=True)
  damaged = [serialized[:end] for end in range(len(serialized))]
  rng = random.Random(0)
  for _ in range(1000):
    copy = bytearray(serialized)
    for _ in range(rng.randint(1, 3)):
      copy[rng.randrange(len(copy))] = rng.randrange(256)
    damaged.append(bytes(copy))
  outcomes = [(_protobuf(record), _native(record)) for record in damaged]
  mismatches = [(record, outcome) for record, outcome in zip(damaged, outcomes) if outcome[0] != outcome[1]]
  assert not mismatches, mismatches[:3]
  refused = sum(native == "refused" for _, native in outcomes)
  assert len(damaged) // 2 < refused < len(damaged)  # neither check is vacuous


@needs_op
def test_a_refused_record_is_named_in_the_error():
  good = _record([4, 5], [2, 2]).SerializeToString()
  bad = _record([4], [2]).SerializeToString()[:-1]
  with pytest.raises(tf.errors.InvalidArgumentError, match="record 1 "):
    ops.parse_token_sequences(tf.constant([good, bad]), *KEYS)
  floats = tf.train.SequenceExample.FromString(_record([4, 5], [2, 2], [[3], [4]]).SerializeToString())
  floats.feature_lists.feature_list[contract.CHARS].feature[1].float_list.value.append(1.0)
  with pytest.raises(tf.errors.InvalidArgumentError, match="record 1: step 1 of feature list 'chars' must hold int64"):
    ops.parse_token_sequences(tf.constant([good, floats.SerializeToString()]), *KEYS)
