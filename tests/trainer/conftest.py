"""A chunk-tagged (named entity) corpus and a CRF tagger trained on it, each built once per run."""

import json
import random
import subprocess

import pytest

from tests.conftest import built_once, call_cli, preprocess, write_conll

PEOPLE = ["Anna Berg", "Bo", "Carl Dahl", "Dora", "Erik Fors Gran", "Fay"]
PLACES = ["Oslo", "New York", "Rio de Janeiro", "Lund", "Kyiv"]
ORGANISATIONS = ["Acme", "Nordic Rail", "Blue Sky Labs", "Unesco"]
NAMES = {"PER": PEOPLE, "LOC": PLACES, "ORG": ORGANISATIONS}
TEMPLATES = [
    "PER flew to LOC .", "PER works for ORG in LOC .", "the office of ORG is in LOC", "PER PER and PER met .",
    "nothing happened today .", "LOC LOC trains are late", "ORG hired PER", "PER said that ORG ORG merged",
]


def chunk_sentences(count, scheme, seed):
  """`count` sentences of (token, label), entities written in `scheme` (iob1 or iob2).

  Templates put entities of one type side by side ("PER PER"), so an IOB1 corpus has B-
  labels, and an IOB2 one B- labels not after the same type: either scheme is recognisable.
  """
  rng = random.Random(seed)
  sentences = []
  for _ in range(count):
    sentence, previous_type = [], None
    for slot in rng.choice(TEMPLATES).split():
      if slot not in NAMES:
        sentence.append((slot, "O"))
        previous_type = None
        continue
      words = rng.choice(NAMES[slot]).split()
      first = "B" if scheme == "iob2" or previous_type == slot else "I"
      sentence += [(word, f"{first if i == 0 else 'I'}-{slot}") for i, word in enumerate(words)]
      previous_type = slot
    sentences.append(sentence)
  return sentences


CHUNK_CORPUS = "entities.conll"  # beside the data's output directory
CHUNK_TAGGER_FLAGS = ("--crf", "--cpu_replicas", "2", "--bidirectional", "--embedding_dim", "16", "--hidden", "16",
                      "--train_steps", "60", "--eval_every", "20", "--checkpoint_every", "20", "--log_every", "20",
                      "--tokens_per_batch", "256",
                      "--dropout", "0", "--word_dropout", "0", "--decay", "none", "--char_features", "64")  # as measured


@pytest.fixture(scope="session")
def chunk_tag_data(tmp_path_factory):
  """The pipeline's output (conll, tag, 20% eval) on 300 IOB2 sentences: CHUNK_CORPUS beside it."""
  def build(base):
    base.mkdir(parents=True)
    write_conll(base / CHUNK_CORPUS, chunk_sentences(300, "iob2", seed=7))
    # --no-lowercase: tests write the shards back as text from vocab.txt, which then is the text.
    preprocess(base / CHUNK_CORPUS, base / "out", "conll", "tag", "--eval_fraction", "0.2", "--no-lowercase")
  return str(built_once(tmp_path_factory, "chunk_tag_data", build) / "out")


@pytest.fixture(scope="session")
def chunk_tagger(chunk_tag_data, tmp_path_factory):
  """A CRF tagger (CHUNK_TAGGER_FLAGS: 2 replicas, 60 steps) on chunk_tag_data: (model_dir, process)."""
  def build(path):
    path.mkdir(parents=True)
    process = call_cli("trainer.task", "--data_dir", chunk_tag_data, "--model_dir", path / "model",
                       *CHUNK_TAGGER_FLAGS)
    (path / "process.json").write_text(json.dumps([process.args, process.stdout, process.stderr]))
  path = built_once(tmp_path_factory, "chunk_tagger", build)
  args, stdout, stderr = json.loads((path / "process.json").read_text())
  return path / "model", subprocess.CompletedProcess(args, 0, stdout, stderr)
