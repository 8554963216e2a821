"""The CRF's loss is exact (replicas, padding, brute force), and a CRF tagger trained on 2
replicas is scored, served and predicted with well-formed tags and seqeval's F1."""

import itertools
import json
import os
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf

import contract
from tests.conftest import call_cli, read_records
from tests.peers import seqeval_scores
from tests.trainer.test_entities import well_formed
from tests.trainer.test_loop import loss_and_gradients
from trainer import data
from trainer.config import TrainerConfig
from trainer.loop import Trainer

# Rows of token ids and chunk_tag_data's label ids. Label names are looked up, since
# labels.txt is in frequency order; "<unk>" stands for an eval label unseen in training,
# and rows 0 and 2 are malformed IOB2 (an I- after O, an I- of another type).
TOKENS = [[5, 3, 9, 2, 8], [7, 7], [4, 6, 2, 11], [3]]
LABELS = [["B-PER", "I-PER", "O", "I-LOC", "O"], ["B-ORG", "O"], ["O", "B-LOC", "I-PER", "<unk>"], ["B-PER"]]


def label_ids(data_dir):
  names = contract.read_vocab(os.path.join(data_dir, "labels.txt"))
  return [[names.index(label) for label in row] for row in LABELS]


def global_batch(label_rows, width, rows=range(4)):
  pad = lambda s: s + [0] * (width - len(s))
  matrix = lambda rows_: tf.constant(np.array(rows_, np.int64).reshape(-1, width))
  return {contract.TOKENS: matrix([pad(TOKENS[i]) for i in rows]),
          contract.LABELS: matrix([pad(label_rows[i]) for i in rows]),
          contract.LENGTH: tf.constant([len(TOKENS[i]) for i in rows], tf.int64),
          data.WEIGHT: tf.ones([len(rows)], tf.float32)}


def make_trainer(data_dir, replicas, reduction, tmp_path):
  devices = [f"/cpu:{i}" for i in range(replicas)]
  strategy = tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
  config = TrainerConfig(data_dir=data_dir, model_dir=str(tmp_path / f"m{replicas}{reduction}"), embedding_dim=8,
                         hidden=8, bidirectional=True, loss_reduction=reduction, crf=True, tag_scheme="iob2",
                         char_features=0)  # the batches here are word-only
  trainer = Trainer(config, strategy, contract.read_metadata(data_dir))
  rng = np.random.default_rng(0)
  trainer.model.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) for w in trainer.model.get_weights()])
  return trainer


@pytest.mark.long
def test_crf_loss_and_gradients_are_exact_with_1_and_2_replicas_any_padding_and_by_brute_force(
    chunk_tag_data, tmp_path):
  labels = label_ids(chunk_tag_data)
  batch = lambda width, rows=range(4): global_batch(labels, width, rows)
  trainers = {}
  for reduction in ("token", "sequence"):
    one, two = (make_trainer(chunk_tag_data, replicas, reduction, tmp_path) for replicas in (1, 2))
    trainers[reduction] = one
    reference_loss, reference_gradients = loss_and_gradients(one, [batch(5)])
    assert np.isfinite(reference_loss) and reference_loss > 0
    assert all(np.isfinite(g).all() for g in reference_gradients)
    paths = [variable.path for variable in one.model.trainable_variables]
    assert np.abs(reference_gradients[paths.index("crf/transitions")]).sum() > 0  # the transition scores learn
    cases = {
        "wider padding": (one, [batch(12)]),
        "2 replicas": (two, [batch(5, [0, 1]), batch(5, [2, 3])]),
        "2 replicas, uneven split": (two, [batch(5, [0]), batch(7, [1, 2, 3])]),
        "2 replicas, one given only filler": (two, [batch(5), {**batch(5, [0]), data.WEIGHT: tf.zeros([1])}]),
        "2 replicas, one empty": (two, [batch(5), batch(5, [])]),
    }
    for name, (trainer, batches) in cases.items():
      loss, gradients = loss_and_gradients(trainer, batches)
      assert loss == pytest.approx(reference_loss, rel=1e-5, abs=1e-6), (reduction, name)
      for got, want in zip(gradients, reference_gradients):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6, err_msg=f"{reduction}: {name}")

  # token reduction, one row: the negative log-probability of its well-formed gold path
  # (an I- after O read as B-: the chunk conlleval reads) among all label paths.
  one = trainers["token"]
  names = contract.read_vocab(os.path.join(chunk_tag_data, "labels.txt"))
  row = [names.index(label) for label in ["B-PER", "I-PER", "O", "B-LOC"]]  # row 0's first 4, made IOB2
  logits = one.model(tf.constant([TOKENS[0][:4]], tf.int64), training=False).numpy()[0]
  layer = one.model.get_layer("crf")
  transitions, start, end = (w.numpy() for w in (layer.transitions, layer.start, layer.end))
  allowed = one.decoder.tables
  scores = {}
  for path in itertools.product(range(len(names)), repeat=4):
    moves = [allowed.allowed_start[path[0]], allowed.allowed_end[path[-1]]] + [
        allowed.allowed[a, b] for a, b in zip(path, path[1:])]
    if all(moves):
      scores[path] = (start[path[0]] + end[path[-1]] + sum(logits[t, y] for t, y in enumerate(path))
                      + sum(transitions[a, b] for a, b in zip(path, path[1:])))
  log_z = np.logaddexp.reduce(list(scores.values()))
  four = {**batch(5, [0]), contract.LENGTH: tf.constant([4], tf.int64),
          contract.TOKENS: tf.constant([TOKENS[0][:4] + [0]], tf.int64),
          contract.LABELS: tf.constant([labels[0][:4] + [0]], tf.int64)}
  loss, _ = loss_and_gradients(one, [four])
  assert loss == pytest.approx((log_z - scores[tuple(row)]) / 4, rel=1e-4)


@pytest.mark.long
def test_a_crf_tagger_is_chosen_by_f1_and_evaluate_reproduces_its_metrics(chunk_tagger, chunk_tag_data):
  model_dir, process = chunk_tagger
  with open(model_dir / "model.json") as f:
    description = json.load(f)
  assert description["tag_scheme"] == "iob2" and description["crf"] is True
  with open(model_dir / "metrics.json") as f:
    metrics = json.load(f)
  logged = {int(step): float(f1) for step, f1 in
            re.findall(r"step (\d+)  eval_loss .* eval_f1 ([\d.]+)", process.stderr)}
  assert sorted(logged) == [20, 40, 60]
  assert metrics["best"]["eval_f1"] == pytest.approx(max(logged.values()), abs=1e-4)
  assert max(logged.values()) > 0.2
  assert logged[metrics["best_step"]] == max(logged.values())
  for key in ("eval_precision", "eval_recall", "eval_f1"):
    assert 0.0 <= metrics[key] <= 1.0
  evaluated = json.loads(call_cli("trainer.evaluate", "--model_dir", model_dir, "--data_dir", chunk_tag_data,
                                  "--split", "eval").stdout.strip().splitlines()[-1])
  assert set(evaluated) == set(metrics["best"])
  for key, value in metrics["best"].items():
    assert evaluated[key] == pytest.approx(value, abs=1e-4), key


def test_raw_files_are_scored_as_seqeval_scores_the_predictions_which_are_well_formed(
    chunk_tagger, chunk_tag_data, tmp_path):
  # The eval split written back as a CoNLL file: the raw signature scores it as the score
  # signature scores the shards, and predict's labels for it are what seqeval scores.
  model_dir, _ = chunk_tagger
  tokens = contract.read_vocab(os.path.join(chunk_tag_data, "vocab.txt"))
  names = contract.read_vocab(os.path.join(chunk_tag_data, "labels.txt"))
  gold = []
  with open(tmp_path / "eval.conll", "w", encoding="utf-8") as f:
    for record in read_records(chunk_tag_data, "eval"):
      gold.append([names[i] for i in record["labels"]])
      f.write("".join(f"{tokens[t]}\t{names[l]}\n" for t, l in zip(record["tokens"], record["labels"])) + "\n")
  from_file = json.loads(call_cli("trainer.evaluate", "--model_dir", model_dir, "--input", tmp_path / "eval.conll",
                                  "--format", "conll").stdout.strip().splitlines()[-1])
  from_split = json.loads(call_cli("trainer.evaluate", "--model_dir", model_dir, "--data_dir", chunk_tag_data,
                                   "--split", "eval").stdout.strip().splitlines()[-1])
  for key, value in from_split.items():
    assert from_file[key] == pytest.approx(value, abs=1e-4), key

  call_cli("trainer.predict", "--model_dir", model_dir, "--input", tmp_path / "eval.conll", "--format", "conll",
           "--output", tmp_path / "predicted.conll")
  blocks = (tmp_path / "predicted.conll").read_text(encoding="utf-8").strip().split("\n\n")
  predicted = [[row.split("\t")[-1] for row in block.split("\n")] for block in blocks]
  assert [len(sentence) for sentence in predicted] == [len(sentence) for sentence in gold]
  assert all(well_formed("iob2", sentence) for sentence in predicted)
  (reference,) = seqeval_scores([(gold, predicted)])
  for key in ("precision", "recall", "f1"):
    assert from_file[f"eval_{key}"] == pytest.approx(reference[key], abs=1e-9), key


def test_serving_any_text_gives_well_formed_tags(chunk_tagger):
  model_dir, _ = chunk_tagger
  serving = contract.load_saved_model(str(model_dir / "export")).signatures["serving_default"]
  words = ["Anna", "Berg", "flew", "to", "New", "York", "Acme", "Unesco", "and", ".", "zebra", "Oslo", "Lund"]
  rng = np.random.default_rng(0)
  texts = [" ".join(rng.choice(words, size=rng.integers(1, 12))) for _ in range(64)]
  outputs = serving(text=tf.constant(texts))
  for labels, length in zip(outputs["labels"].numpy(), outputs["length"].numpy()):
    sentence = [label.decode() for label in labels[:length]]
    assert well_formed("iob2", sentence), sentence
    assert all(label == b"" for label in labels[length:])


def test_a_scheme_that_labels_txt_does_not_fit_or_another_than_model_jsons_is_refused(
    demo_tag_data, chunk_tagger, chunk_tag_data, tmp_path):
  process = call_cli("trainer.task", "--data_dir", demo_tag_data, "--model_dir", tmp_path / "pos",
                     "--tag_scheme", "iob2", check=False)
  assert process.returncode == 2 and "not a chunk tag set" in process.stderr.strip().splitlines()[-1]
  resumed = tmp_path / "resumed"
  resumed.mkdir()
  shutil.copy(chunk_tagger[0] / "model.json", resumed / "model.json")
  process = call_cli("trainer.task", "--data_dir", chunk_tag_data, "--model_dir", resumed, "--tag_scheme", "iob1",
                     "--crf", "--bidirectional", "--embedding_dim", "16", "--hidden", "16", check=False)
  assert process.returncode == 2 and "tag_scheme iob2 (now iob1)" in process.stderr.strip().splitlines()[-1]
