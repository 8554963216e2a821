"""Pipeline runs shared by tests in several files, each built once per test run."""

import json

import pytest

from pipeline import wordpiece
from tests.conftest import built_once, preprocess, write_conll

LONG_WORD = "x" * (wordpiece.MAX_BYTES_PER_WORD + 5)
SENTENCES = [
    [("unhappiness", "NOUN"), ("helps", "VERB"), ("nobody", "PRON")],
    [("happiness", "NOUN"), ("helped", "VERB"), ("everybody", "PRON"), (".", "PUNCT")],
    [("unhelpful", "ADJ"), ("people", "NOUN"), ("help", "VERB"), ("happily", "ADV")],
    [(LONG_WORD, "X"), ("helps", "VERB")],
] * 6 + [[("Zyzzyva", "PROPN"), ("helpers", "NOUN")]]
WORDPIECE_CORPUS = "tagged.conll"  # beside the run's output directory
# --no-lowercase: the tests compare the pieces with the words as written.
WORDPIECE_OPTIONS = ("--tokenizer", "wordpiece", "--max_vocab", "40", "--eval_fraction", "0.2", "--num_shards", "3",
                     "--no-lowercase")


@pytest.fixture(scope="session")
def wordpiece_tag_run(tmp_path_factory):
  """The CLI's output on SENTENCES (conll, tag, WORDPIECE_OPTIONS), built once per test run
  for every xdist worker; the corpus is WORDPIECE_CORPUS beside it."""
  def build(base):
    base.mkdir(parents=True)
    corpus = base / WORDPIECE_CORPUS
    write_conll(corpus, SENTENCES)
    preprocess(corpus, base / "out", "conll", "tag", *WORDPIECE_OPTIONS)
  return str(built_once(tmp_path_factory, "wordpiece_tag_run", build) / "out")


# A classify corpus of good records, films reviewed, and a record of each kind that is
# filtered or dead-lettered: CRLF line ends and no final newline, beside a zero-byte file.
CLASSIFY_GOOD = [{"text": "good one", "label": "pos"}, {"tokens": ["fine", "too"], "label": "neg"},
                 {"text": "numbers as labels", "label": 3}] + [
                     {"text": f"a {adjective} film number {i}", "label": label}
                     for i, (adjective, label) in enumerate([("fine", "pos"), ("dull", "neg")] * 6)]
CLASSIFY_LINES = [json.dumps(g).encode() for g in CLASSIFY_GOOD] + [
    b"",  # filtered: empty
    b"   \t ",  # filtered: whitespace only
    b'{"text": "   ", "label": "pos"}',  # filtered: empty text
    b"{not json",  # bad_json
    b"[1, 2]",  # not_an_object
    b'{"label": "pos"}',  # missing_text
    b'{"text": "no label"}',  # missing_label
    b'{"text": 5, "label": "pos"}',  # wrong_type_text
    b'{"tokens": ["a b"], "label": "pos"}',  # bad_token
    b'{"text": "x", "label": ["pos"]}',  # wrong_type_label
    b'{"text": "caf\xe9", "label": "pos"}',  # undecodable (latin-1)
    b'{"text": "nul \x00 here", "label": "pos"}',  # nul_byte
]
CLASSIFY_CORPUS = "mixed.jsonl"  # beside the run's output directory, with zero.jsonl


@pytest.fixture(scope="session")
def classify_run(tmp_path_factory):
  """The CLI's output on CLASSIFY_LINES (jsonl, classify, gzip-compressed shards, 30% eval)."""
  def build(base):
    base.mkdir(parents=True)
    (base / CLASSIFY_CORPUS).write_bytes(b"\r\n".join(CLASSIFY_LINES))
    (base / "zero.jsonl").write_bytes(b"")  # no record, no error
    preprocess([str(base / CLASSIFY_CORPUS), str(base / "zero.jsonl")], base / "out", "jsonl", "classify",
               "--compression", "gzip", "--eval_fraction", "0.3", "--max_error_fraction", "0.9")
  return str(built_once(tmp_path_factory, "classify_run", build) / "out")


def _lm_lines():
  """Prose-like lines from a small vocabulary (a fixed seed), with blank and non-ASCII lines."""
  import random  # pylint: disable=g-import-not-at-top
  rng = random.Random(29)
  words = ["the", "a", "river", "runs", "North", "stone", "café", "東京", "naïve", "old", "light", ",", "."]
  lines = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 14))) for _ in range(240)]
  return lines[:100] + ["", "   "] + lines[100:]


LM_LINES = _lm_lines()
LM_CORPUS = "prose.txt"  # beside the run's output directory
LM_OPTIONS = ("--lowercase", "--eval_fraction", "0.2", "--num_shards", "3")


@pytest.fixture(scope="session")
def lm_run(tmp_path_factory):
  """The CLI's output on LM_LINES (text, lm, LM_OPTIONS), built once per test run; the
  corpus is LM_CORPUS beside it."""
  def build(base):
    base.mkdir(parents=True)
    (base / LM_CORPUS).write_text("\r\n".join(LM_LINES) + "\n", encoding="utf-8")
    preprocess(base / LM_CORPUS, base / "out", "text", "lm", *LM_OPTIONS)
  return str(built_once(tmp_path_factory, "lm_run", build) / "out")
