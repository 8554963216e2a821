"""ReadCorpus and Split as Beam transforms, on files written by the tests."""

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.testing.util import assert_that, equal_to

from pipeline import counts, read
from tests.pipeline.beam_testing import test_pipeline


def rows(batch: pa.RecordBatch):
  """A RecordBatch → tuples of decoded column values (lists of str), split key dropped."""
  names = [n for n in batch.schema.names if n != read.SPLIT_KEY]
  columns = [batch.column(n).to_pylist() for n in names]
  return [tuple(tuple(v.decode() for v in cell) for cell in row) for row in zip(*columns)]


def read_corpus(paths, file_format, task, max_record_bytes=1 << 20):
  files = [read.InputFile(str(p), p.stat().st_size) for p in paths]
  return read.ReadCorpus(files, file_format, task, max_record_bytes)


@pytest.mark.parametrize("range_bytes", [7, 64, 1 << 20])
def test_text_ranges_read_every_line_exactly_once(tmp_path, monkeypatch, range_bytes):
  monkeypatch.setattr(read, "RANGE_BYTES", range_bytes)
  lines = [f"line {i} " + "x" * (i % 13) for i in range(200)]
  path = tmp_path / "a.txt"
  path.write_bytes(("\n".join(lines[:100]) + "\r\n" + "\r\n".join(lines[100:150]) + "\r"
                    + "\r".join(lines[150:])).encode())  # \n, \r\n and lone \r line ends
  with test_pipeline() as p:
    out = p | read_corpus([path], "text", "lm")
    assert_that(out.records | beam.FlatMap(rows) | beam.Map(lambda r: r[0][0]), equal_to(lines), label="lines")
    assert_that(out[counts.COUNTS] | beam.CombinePerKey(sum), equal_to([("read", 200)]), label="counts")


def test_conll_blocks_docstart_comments_and_spaces(tmp_path):
  tabbed = tmp_path / "a.conll"
  tabbed.write_text("-DOCSTART- -X- O O\n\n# sent_id = 1\nEU\tNNP\tB-ORG\nrejects\tVBZ\tO\n\n"
                    "German\tJJ\tB-MISC\n\n\nlonely\n\n", encoding="utf-8")
  spaced = tmp_path / "b.conll"  # no tab anywhere: columns split on runs of spaces
  spaced.write_text("Peter   B-PER\nBlackburn I-PER\n", encoding="utf-8")  # no final blank line
  with test_pipeline() as p:
    out = p | read_corpus([tabbed, spaced], "conll", "tag")
    assert_that(out.records | beam.FlatMap(rows), equal_to([
        (("",), ("EU", "rejects"), ("B-ORG", "O")),
        (("",), ("German",), ("B-MISC",)),
        (("",), ("Peter", "Blackburn"), ("B-PER", "I-PER")),
    ]), label="records")
    assert_that(out[counts.DEAD_LETTER] | beam.Map(lambda d: (d["reason"], d["record"])),
                equal_to([("conll_one_column", "lonely")]), label="dead")


def test_record_too_long_is_a_dead_letter(tmp_path):
  path = tmp_path / "long.txt"
  path.write_bytes(b"short\n" + b"y" * 5000 + b"\nafter\n")
  with test_pipeline() as p:
    out = p | read_corpus([path], "text", "lm", max_record_bytes=1000)
    assert_that(out.records | beam.FlatMap(rows) | beam.Map(lambda r: r[0][0]),
                equal_to(["short", "after"]), label="kept")
    assert_that(out[counts.DEAD_LETTER] | beam.Map(lambda d: (d["reason"], d["offset"])),
                equal_to([("record_too_long", 6)]), label="dead")


def test_split_is_stable_and_respects_the_fraction(tmp_path):
  path = tmp_path / "a.txt"
  path.write_text("".join(f"sentence number {i}\n" for i in range(2000)), encoding="utf-8")
  records = [read.Record(text=f"sentence number {i}") for i in range(2000)]
  threshold = read.split_fraction_threshold(0.25)
  expected_eval = sorted(r.text for r in records if read.content_key(r) < threshold)
  assert 400 < len(expected_eval) < 600
  with test_pipeline() as p:
    corpus = p | read_corpus([path], "text", "lm")
    splits = corpus.records | read.Split(0.25)
    assert_that(splits["eval"] | "EvalRows" >> beam.FlatMap(rows) | beam.Map(lambda r: r[0][0]),
                equal_to(expected_eval), label="eval")
    assert_that(splits["train"] | "TrainRows" >> beam.FlatMap(rows) | beam.combiners.Count.Globally(),
                equal_to([2000 - len(expected_eval)]), label="train")


def test_content_key_is_stable_and_content_sensitive():
  key = read.content_key(read.Record(tokens=["a", "b"], labels=["X", "Y"]))
  assert key == read.content_key(read.Record(tokens=["a", "b"], labels=["X", "Y"]))
  assert key != read.content_key(read.Record(tokens=["a", "b"], labels=["X", "Z"]))
  assert key != read.content_key(read.Record(tokens=["ab"], labels=["X", "Y"]))
