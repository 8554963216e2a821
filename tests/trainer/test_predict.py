"""End-to-end: `trainer.predict` on a tiny model trained on the demo corpus (as a process:
test_light_clis.py)."""

import os

import pytest

import contract
from tests.conftest import call_cli

# Words of the demo grammar, so every token is in vocab.txt and comes back as itself.
TEXTS = ["The old dog watch a light", "Alice sees the cat !"]


@pytest.fixture(scope="module")
def model_dir(demo_tagger):
  return demo_tagger[0]  # tests/conftest.py: trained once per session


def real_labels(data_dir):
  return set(contract.read_vocab(os.path.join(data_dir, "labels.txt"))[contract.NUM_RESERVED:])


def test_tag_prints_each_token_with_a_real_label(model_dir, demo_tag_data):
  token_vocab = set(contract.read_vocab(os.path.join(demo_tag_data, "vocab.txt")))
  assert all(word.lower() in token_vocab for text in TEXTS for word in text.split())  # tag: lowercased words
  process = call_cli("trainer.predict", "--model_dir", model_dir, "--data_dir", demo_tag_data, *TEXTS)
  lines = process.stdout.splitlines()
  assert len(lines) == len(TEXTS)
  labels = real_labels(demo_tag_data)
  for text, line in zip(TEXTS, lines):
    pairs = [pair.rsplit("/", 1) for pair in line.split(" ")]
    assert [token for token, _ in pairs] == text.lower().split()  # the tokens as the model sees them (tag: lowercased)
    assert all(label in labels for _, label in pairs), line


def test_stdin_without_data_dir_prints_labels_one_line_per_text(model_dir, demo_tag_data):
  with_tokens = call_cli("trainer.predict", "--model_dir", model_dir, "--data_dir", demo_tag_data, *TEXTS)
  # A blank line is a text too: the output stays aligned with the input, line for line.
  process = call_cli("trainer.predict", "--model_dir", model_dir, stdin=TEXTS[0] + "\n\n" + TEXTS[1] + "\n")
  lines = process.stdout.split("\n")
  assert lines[-1] == "" and len(lines[:-1]) == 3
  first, blank, second = lines[:-1]
  assert blank == ""
  labels = real_labels(demo_tag_data)
  for text, line, tagged in zip(TEXTS, (first, second), with_tokens.stdout.splitlines()):
    assert len(line.split(" ")) == len(text.split())
    assert set(line.split(" ")) <= labels
    assert line.split(" ") == [pair.rsplit("/", 1)[1] for pair in tagged.split(" ")]


@pytest.mark.parametrize("case", ["empty_dir", "data_dir"])
def test_a_directory_without_export_exits_2_with_one_line(demo_tag_data, tmp_path, case):
  model_dir = {"empty_dir": tmp_path, "data_dir": demo_tag_data}[case]
  process = call_cli("trainer.predict", "--model_dir", model_dir, "The cat sleeps", check=False)
  assert process.returncode == 2
  assert process.stdout == ""
  last = process.stderr.strip().splitlines()[-1]
  assert last.startswith(f"python -m trainer.predict: error: no export/ in {model_dir}"), process.stderr[-2000:]
  assert ("--data_dir" if case == "data_dir" else "python -m trainer.task") in last
  assert "Traceback" not in process.stderr


def test_wordpiece_tag_output_pairs_each_word_with_its_label():
  """A wordpiece tag export returns one label per word but ids per piece: pieces are joined
  back into words (a piece starting with the suffix continues the word before it)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from trainer import predict  # pylint: disable=g-import-not-at-top
  vocab = predict.TokenVocab(["<pad>", "<unk>", "un", "##help", "##ful", "cat", "##s"], "##")
  outputs = {"labels": tf.constant([[b"ADJ", b"NOUN", b""], [b"NOUN", b"", b""]]),
             "token_ids": tf.constant(np.array([[2, 3, 4, 5, 6], [5, 0, 0, 0, 0]], np.int64)),
             contract.LENGTH: tf.constant([2, 1], tf.int64)}
  assert predict.format_outputs("tag", outputs, vocab) == ["unhelpful/ADJ cats/NOUN", "cat/NOUN"]
  words = predict.TokenVocab(vocab.entries, None)  # word vocabulary: "##s" is a word of its own
  outputs["labels"] = tf.constant([[b"A", b"B", b"C", b"D", b"E"], [b"F", b"", b"", b"", b""]])
  outputs[contract.LENGTH] = tf.constant([5, 1], tf.int64)
  assert predict.format_outputs("tag", outputs, words) == ["un/A ##help/B ##ful/C cat/D ##s/E", "cat/F"]


def test_parquet_rows_get_the_labels_the_same_sentences_get_as_conll(model_dir, tmp_path):
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
  sentences = [text.split() for text in TEXTS] + [["Bob", "runs"]]
  rows = [{"id": i, "words": words} for i, words in enumerate(sentences)] + [{"id": 9, "words": None}]
  pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet", row_group_size=2)
  (tmp_path / "in.conll").write_text("".join("".join(w + "\n" for w in words) + "\n" for words in sentences))
  call_cli("trainer.predict", "--model_dir", model_dir, "--input", tmp_path / "in.parquet", "--format", "parquet",
           "--tokens_field", "words", "--output", tmp_path / "out.parquet")
  conll = call_cli("trainer.predict", "--model_dir", model_dir, "--input", tmp_path / "in.conll", "--format", "conll")
  by_conll = [[row.split(" ")[-1] for row in block.split("\n") if row] for block in conll.stdout.split("\n\n")]
  table = pq.read_table(tmp_path / "out.parquet").to_pylist()
  assert [row["id"] for row in table] == [0, 1, 2, 9] and [row["words"] for row in table] == [r["words"] for r in rows]
  assert [row["labels"] for row in table[:3]] == by_conll[:3]
  assert table[3]["labels"] is None and table[3]["error"] == "missing_text"  # neither text nor tokens
  assert [row["error"] for row in table[:3]] == [None] * 3
