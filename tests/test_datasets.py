"""A public dataset as it ships, end to end: a CoNLL-U treebank's official train, dev and test
files through pipeline.preprocess (--eval_input, --test_input), trainer.task (which never
reads test), trainer.evaluate --split test (equal to evaluating the raw test file) and
trainer.predict --format conllu (the file written back, only the label column changed)."""

import codecs
import json
import os
import shutil

import pytest

import contract
from tests.conftest import ROOT, call_cli, read_metadata

DEMO_CONLL = os.path.join(ROOT, "data", "demo", "tagged.conll")


def conllu_sentence(index, words, extras=True):
  """A UD-style sentence of (form, upos) pairs: comments, and, where `extras`, a multiword
  token range over the first two words and an empty node after the first."""
  lines = [f"# sent_id = s{index}", f"# text = {' '.join(form for form, _ in words)}"]
  for position, (form, upos) in enumerate(words, 1):
    if extras and position == 1 and len(words) > 1:
      lines.append(f"1-2\t{form}{words[1][0]}\t_\t_\t_\t_\t_\t_\t_\t_")
    lines.append(f"{position}\t{form}\t{form.lower()}\t{upos}\t{upos}-x\t_\t0\tdep\t_\t_")
    if extras and position == 1:
      lines.append("1.1\tghost\tghost\tNOUN\tNN\t_\t_\t_\t1:dep\t_")
  return "\n".join(lines) + "\n\n"


@pytest.fixture(scope="module")
def treebank(tmp_path_factory):
  """Train, dev and test .conllu files from the demo sentences; the test file is UTF-8 with a
  byte-order mark and CRLF line ends, compressed with bzip2, and holds words never seen in
  train, a FORM with a space and a malformed sentence."""
  with open(DEMO_CONLL, encoding="utf-8") as f:
    blocks = [[tuple(row.split("\t")) for row in block.split("\n") if row] for block in f.read().split("\n\n")]
  blocks = [block for block in blocks if block]
  base = tmp_path_factory.mktemp("treebank")
  train = "".join(conllu_sentence(i, words, extras=i % 3 == 0) for i, words in enumerate(blocks[:600]))
  dev = "".join(conllu_sentence(i, words) for i, words in enumerate(blocks[600:700]))
  test = "".join(conllu_sentence(i, words) for i, words in enumerate(blocks[700:780]))
  test += conllu_sentence(900, [("Zyzzyva", "PROPN"), ("New York", "PROPN"), ("sleeps", "VERB")])
  test += "1\tbroken\tbroken\tADJ\n\n"  # 4 columns: a dead letter, written back as it was
  (base / "train.conllu").write_text(train, encoding="utf-8")
  (base / "dev.conllu").write_text(dev, encoding="utf-8")
  import bz2  # pylint: disable=g-import-not-at-top
  test_bytes = codecs.BOM_UTF8 + test.replace("\n", "\r\n").encode("utf-8")
  (base / "test.conllu.bz2").write_bytes(bz2.compress(test_bytes))
  (base / "test.conllu").write_bytes(test_bytes)
  return base


@pytest.fixture(scope="module")
def treebank_data(treebank):
  out = treebank / "out"
  call_cli("pipeline.preprocess", "--input", treebank / "train.conllu", "--eval_input", treebank / "dev.conllu",
           "--test_input", treebank / "test.conllu.bz2", "--output_dir", out, "--format", "conllu", "--task", "tag",
           "--eval_fraction", "0.5")  # not used: dev is the eval split
  return out


def test_official_splits_and_conllu_words(treebank_data):
  metadata = read_metadata(treebank_data)
  splits = metadata["splits"]
  assert {split: splits[split]["examples"] for split in splits} == {"train": 600, "eval": 100, "test": 81}
  assert [shard["file"] for shard in splits["test"]["shards"]] == ["test-00000-of-00001.tfrecord"]
  assert os.path.exists(treebank_data / "test-00000-of-00001.tfrecord")
  assert metadata["counts"]["dead_letter"] == {"conllu_columns": 1}
  assert metadata["counts"]["read"] == 600 + 100 + 82
  assert metadata["inputs"][-1]["split"] == "test" and metadata["options"]["format"] == "conllu"
  vocab = contract.read_vocab(os.path.join(treebank_data, "vocab.txt"))
  assert "ghost" not in vocab and "zyzzyva" not in vocab and "new york" not in vocab  # train only (lowercased: tag)
  words = sum(len(block.split("\n")) for block in open(treebank_data.parent / "train.conllu").read().split("\n\n"))
  assert splits["train"]["tokens"] < words  # ranges, empty nodes and comments are not words
  labels = contract.read_vocab(os.path.join(treebank_data, "labels.txt"))
  assert "PROPN" in labels and not any(label.endswith("-x") for label in labels)  # UPOS, not XPOS
  assert metadata["unk_rate"]["test"] > 0 and metadata["unk_rate"]["train"] == 0


@pytest.mark.long
def test_train_never_reads_test_and_evaluate_and_predict_read_the_raw_test_file_as_the_pipeline(
    treebank, treebank_data, tmp_path):
  without_test = tmp_path / "data"
  shutil.copytree(treebank_data, without_test)
  os.remove(without_test / "test-00000-of-00001.tfrecord")  # the trainer must not need it
  model_dir = tmp_path / "model"
  call_cli("trainer.task", "--data_dir", without_test, "--model_dir", model_dir, "--embedding_dim", "16",
           "--hidden", "16", "--train_steps", "40", "--eval_every", "20", "--bidirectional")
  on_split = json.loads(call_cli("trainer.evaluate", "--model_dir", model_dir, "--data_dir", treebank_data,
                                 "--split", "test").stdout)
  on_file = json.loads(call_cli("trainer.evaluate", "--model_dir", model_dir, "--input",
                                treebank / "test.conllu.bz2", "--format", "conllu").stdout)
  assert on_file.pop("dead_letter") == {"conllu_columns": 1} and on_file.pop("filtered") == {}
  assert set(on_file) == set(on_split)
  for key, value in on_split.items():
    assert on_file[key] == pytest.approx(value, rel=1e-5), key
  assert on_split["eval_examples"] == 81

  output = tmp_path / "tagged.conllu"
  call_cli("trainer.predict", "--model_dir", model_dir, "--input", treebank / "test.conllu", "--format", "conllu",
           "--output", output)
  original, tagged = (treebank / "test.conllu").read_bytes(), output.read_bytes()
  assert tagged.startswith(codecs.BOM_UTF8) and tagged.count(b"\r\n") == original.count(b"\r\n")
  original_lines, tagged_lines = original.split(b"\r\n"), tagged.split(b"\r\n")
  assert len(tagged_lines) == len(original_lines)
  changed = 0
  labels = set(contract.read_vocab(os.path.join(treebank_data, "labels.txt"))[contract.NUM_RESERVED:])
  for before, after in zip(original_lines, tagged_lines):
    columns_before, columns_after = before.split(b"\t"), after.split(b"\t")
    if len(columns_before) == 10 and columns_before[0].isdigit():  # a word: only UPOS may change
      assert columns_after[:3] + columns_after[4:] == columns_before[:3] + columns_before[4:]
      assert columns_after[3].decode() in labels
      changed += columns_after[3] != columns_before[3]
    else:  # comments, ranges, empty nodes, blank lines and the malformed sentence: as they were
      assert after == before
  assert changed < 0.8 * sum(len(c) == 10 and c[0].isdigit() for c in map(lambda l: l.split(b"\t"), original_lines))


@pytest.mark.long
def test_vocab_from_encodes_new_data_with_the_same_ids_and_the_model_continues_on_it(
    demo_tag_data, demo_tagger, tmp_path):
  from tests.conftest import DEMO_TAGGER_FLAGS, write_conll  # pylint: disable=g-import-not-at-top
  with open(DEMO_CONLL, encoding="utf-8") as f:
    blocks = [[tuple(row.split("\t")) for row in block.split("\n") if row] for block in f.read().split("\n\n")]
  sentences = [block for block in blocks[-200:] if block] + [[("Zyzzyva", "PROPN"), ("sleeps", "VERB")]]
  corpus, out = tmp_path / "more.conll", tmp_path / "more"
  write_conll(corpus, sentences)
  common = ["--input", corpus, "--output_dir", out, "--format", "conll", "--task", "tag", "--vocab_from", demo_tag_data]
  refused = call_cli("pipeline.preprocess", *common, "--no-lowercase", check=False)  # tag data: lowercased
  assert refused.returncode == 2 and "was made with --lowercase True" in refused.stderr.strip().splitlines()[-1]
  call_cli("pipeline.preprocess", *common, "--eval_fraction", "0.2")

  for name in ("vocab.txt", "labels.txt", "transform_fn/assets/tokens", "transform_fn/assets/labels"):
    assert (out / name).read_bytes() == open(os.path.join(demo_tag_data, name), "rb").read(), name
  metadata, source = read_metadata(out), read_metadata(demo_tag_data)
  assert metadata["vocab_from"]["output_dir"] == str(demo_tag_data)
  from pipeline.config import TRANSFORM_OPTIONS  # pylint: disable=g-import-not-at-top
  assert all(metadata["options"][name] == source["options"][name] for name in TRANSFORM_OPTIONS if name != "task")
  assert metadata["vocab"] == source["vocab"] and metadata["options"]["eval_fraction"] == 0.2
  vocab = contract.read_vocab(os.path.join(demo_tag_data, "vocab.txt"))
  from tests.conftest import read_records  # pylint: disable=g-import-not-at-top
  written = {tuple(vocab[i] for i in record["tokens"]) for split in ("train", "eval")
             for record in read_records(out, split)}
  expected = {tuple(token.lower() if token.lower() in vocab else "<unk>" for token, _ in sentence)  # tag: lowercased
              for sentence in sentences}
  assert written == expected  # each token by the earlier run's id; unseen ones <unk>

  model_dir = tmp_path / "model"
  shutil.copytree(demo_tagger[0], model_dir)
  flags = list(DEMO_TAGGER_FLAGS)
  flags[flags.index("--train_steps") + 1] = "110"
  process = call_cli("trainer.task", "--data_dir", out, "--model_dir", model_dir, *flags)
  assert "continuing on new data" in process.stderr
  with open(model_dir / "metrics.json") as f:
    metrics = json.load(f)
  assert metrics["global_step"] == 110 and metrics["best_step"] == 110  # the first eval on new data is its best
