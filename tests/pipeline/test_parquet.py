"""--format parquet: rows are records, read a row group at a time, with the jsonl rules.

The oracle: the good records of tests/pipeline/conftest.py's classify corpus, written as
Parquet under other column names, give the classify run's shards and vocabularies byte for
byte (its bad lines are replaced by bad rows of their own)."""

import filecmp
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import inputs
from tests.conftest import preprocess, read_metadata
from tests.pipeline.conftest import CLASSIFY_GOOD
from tests.pipeline.test_bad_input_mix import read_dead_letters

BAD_ROWS = [
    ({"review": None, "words": None, "stars": "pos"}, "missing_text"),
    ({"review": "no label", "words": None, "stars": None}, "missing_label"),
    ({"review": None, "words": ["a b"], "stars": "pos"}, "bad_token"),
    ({"review": "   ", "words": None, "stars": "pos"}, "empty"),  # filtered
    ({"review": "nul \x00 here", "words": None, "stars": "neg"}, "nul_byte"),
]


@pytest.fixture(scope="module")
def parquet_corpus(tmp_path_factory):
  rows = [{"review": good.get("text"), "words": good.get("tokens"), "stars": str(good["label"])}
          for good in CLASSIFY_GOOD]
  rows[3:3] = [row for row, _ in BAD_ROWS]
  table = pa.Table.from_pylist(rows, schema=pa.schema([("review", pa.string()), ("words", pa.list_(pa.string())),
                                                       ("stars", pa.string())]))
  path = tmp_path_factory.mktemp("parquet") / "reviews.parquet"
  pq.write_table(table, path, row_group_size=4)
  return path, rows


def test_rows_are_the_jsonl_records_and_give_the_same_shards(parquet_corpus, classify_run, tmp_path):
  path, rows = parquet_corpus
  assert [(r.start, r.end) for r in inputs.split_into_row_groups(inputs.InputFile(str(path), path.stat().st_size))] \
      == [(i, i + 1) for i in range(5)]  # 20 rows in row groups of 4: a range each
  missing = preprocess(path, tmp_path / "refused", "parquet", "classify", check=False)
  assert missing.returncode == 2 and "no column text or tokens" in missing.stderr.strip().splitlines()[-1]
  assert "(its columns: review, words, stars)" in missing.stderr
  out = tmp_path / "out"
  preprocess(path, out, "parquet", "classify", "--text_field", "review", "--tokens_field", "words",
             "--label_field", "stars", "--compression", "gzip", "--eval_fraction", "0.3", "--max_error_fraction", "0.9")

  theirs = read_metadata(classify_run)
  names = [shard["file"] for split in theirs["splits"].values() for shard in split["shards"]]
  assert names and all(filecmp.cmp(os.path.join(classify_run, n), out / n, shallow=False) for n in names)
  for name in ("vocab.txt", "labels.txt"):
    assert filecmp.cmp(os.path.join(classify_run, name), out / name, shallow=False)
  counts = read_metadata(out)["counts"]
  assert counts["read"] == len(rows) and counts["filtered"] == {"empty": 1}
  assert counts["dead_letter"] == {reason: 1 for _, reason in BAD_ROWS if reason != "empty"}
  dead = {row["reason"]: row for row in read_dead_letters(out)}
  assert dead["missing_label"]["offset"] == 3 + 1  # its row number in the file
  assert json.loads(dead["missing_label"]["record"]) == BAD_ROWS[1][0]
