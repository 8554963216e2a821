"""Entity counts against seqeval (conlleval's rules), the tables, and which scheme a corpus is."""

import numpy as np
import pytest
import tensorflow as tf

import contract
from tests.conftest import preprocess, write_conll
from tests.peers import seqeval_scores
from tests.trainer.conftest import chunk_sentences
from trainer import entities
from trainer import metrics as metrics_lib

RESERVED = list(contract.RESERVED_TOKENS)
IOB_LABELS = RESERVED + ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
BIOES_LABELS = RESERVED + ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]

# Pairs of (gold, predicted) sentences that conlleval reads in ways worth pinning down.
HANDWRITTEN = [
    (["O", "I-PER", "I-PER", "O"], ["O", "B-PER", "I-PER", "O"]),  # an I- with no B-: the same chunk
    (["I-PER", "I-PER"], ["B-PER", "I-PER"]),  # at the start of a sentence
    (["B-PER", "I-LOC", "I-LOC"], ["B-PER", "B-LOC", "I-LOC"]),  # a type change inside a chunk ends it
    (["B-PER", "I-PER", "I-LOC"], ["B-PER", "I-PER", "O"]),
    (["B-PER", "B-PER", "I-PER"], ["B-PER", "I-PER", "I-PER"]),  # adjacent chunks of one type
    (["I-PER", "B-PER", "O", "I-LOC"], ["I-PER", "I-PER", "O", "B-LOC"]),  # IOB1
    (["B-PER", "I-PER"], ["B-PER", "I-PER"]),  # a chunk that ends with the sentence
    (["O", "O"], ["B-LOC", "O"]),  # nothing gold: precision 0, recall 0
    (["B-LOC"], ["O"]),  # nothing predicted
    (["B-PER", "O"], ["S-PER", "O"]),  # BIOES fragments: B- then O, a lone E-, S- then E-, ...
    (["E-PER", "E-PER"], ["S-PER", "S-PER"]),
    (["I-PER", "E-PER", "I-PER"], ["B-PER", "E-PER", "S-PER"]),
    (["S-PER", "E-PER", "B-PER", "S-PER"], ["S-PER", "I-PER", "B-PER", "E-PER"]),
    (["B-PER", "E-LOC", "S-LOC", "I-LOC"], ["B-PER", "I-PER", "E-PER", "O"]),
    (["B-LOC", "I-LOC", "E-LOC", "O", "S-PER"], ["B-LOC", "I-LOC", "E-LOC", "O", "S-PER"]),
    ([], []),
]
ALL_LABELS = RESERVED + sorted({label for pair in HANDWRITTEN for side in pair for label in side} | {"O"})


def counts(labels, cases):
  """Our chunk counts of each (gold sentences, predicted sentences) case, padded to a batch
  wider than the longest sentence: {"chunks_correct", "chunks_gold", "chunks_predicted"}."""
  tables = entities.build_tables(labels, "bioes" if any(l[0] in "ES" for l in labels[2:]) else "iob2")
  results = []
  for gold, predicted in cases:
    width = max([len(sentence) for sentence in gold] + [0]) + 3
    ids = lambda sentences: tf.constant([[labels.index(l) for l in s] + [0] * (width - len(s)) for s in sentences],
                                        tf.int64, shape=[len(sentences), width])
    lengths = tf.constant([len(s) for s in gold], tf.int32)
    results.append({k: float(v) for k, v in entities.chunk_sums(tables, ids(gold), ids(predicted), lengths).items()})
  return results


def assert_same_as_seqeval(labels, cases):
  ours, theirs = counts(labels, cases), seqeval_scores(cases)
  for index, (sums, reference) in enumerate(zip(ours, theirs)):
    metrics = metrics_lib.eval_metrics({**dict.fromkeys(metrics_lib.SUM_KEYS, 0.0), **sums}, "tag", chunks=True)
    case = cases[index]
    assert sums["chunks_gold"] == reference["gold"] and sums["chunks_predicted"] == reference["predicted"], case
    for key in ("precision", "recall", "f1"):
      assert metrics[f"eval_{key}"] == pytest.approx(reference[key], abs=1e-9), (key, case)


def test_handwritten_sequences_count_as_seqeval_counts_them():
  # Each pair on its own, then all of them as one split of many sentences.
  cases = [([gold], [predicted]) for gold, predicted in HANDWRITTEN]
  cases.append(([gold for gold, _ in HANDWRITTEN], [predicted for _, predicted in HANDWRITTEN]))
  assert_same_as_seqeval(ALL_LABELS, cases)


@pytest.mark.parametrize("labels", [IOB_LABELS, BIOES_LABELS], ids=["iob", "bioes"])
def test_random_sequences_count_as_seqeval_counts_them(labels):
  # Uniform labels (malformed everywhere), and predictions that are the gold with a few
  # labels changed (most chunks right), over sentences of 0 to 12 words.
  rng = np.random.default_rng(len(labels))
  real = labels[contract.NUM_RESERVED:]
  cases = []
  for _ in range(12):
    gold = [list(rng.choice(real, size=rng.integers(0, 13))) for _ in range(25)]
    noisy = [[l if rng.random() > 0.15 else rng.choice(real) for l in sentence] for sentence in gold]
    uniform = [list(rng.choice(real, size=len(sentence))) for sentence in gold]
    cases += [(gold, noisy), (gold, uniform)]
  assert_same_as_seqeval(labels, cases)


def test_unk_and_pad_labels_read_as_o():
  tables = entities.build_tables(IOB_LABELS, "iob2")
  o, b_per, i_per, unk = (IOB_LABELS.index(l) for l in ("O", "B-PER", "I-PER", "<unk>"))
  lengths = tf.constant([4])
  with_unk = entities.chunk_sums(tables, tf.constant([[b_per, unk, i_per, unk]]), tf.constant([[b_per, o, b_per, o]]),
                                 lengths)
  with_o = entities.chunk_sums(tables, tf.constant([[b_per, o, i_per, o]]), tf.constant([[b_per, o, b_per, o]]),
                               lengths)
  assert {k: float(v) for k, v in with_unk.items()} == {k: float(v) for k, v in with_o.items()} == {
      "chunks_gold": 2.0, "chunks_predicted": 2.0, "chunks_correct": 2.0}


def move_ok(scheme, previous, tag):
  """Whether `tag` may follow `previous` under a scheme (a sentence reads as O before its
  first tag and after its last): the schemes' definitions, written here on their own."""
  if tag in RESERVED or previous in RESERVED:
    return False
  kind, type_, previous_kind, previous_type = tag[0], tag[2:], previous[0], previous[2:]
  continues = previous_kind in "BI" and previous_type == type_
  if scheme == "iob2":  # I-X only inside a chunk of type X
    return kind != "I" or continues
  if scheme == "iob1":  # B-X only between two chunks of type X
    return kind != "B" or continues
  if previous_kind in "BI":  # bioes: a chunk goes on (I-X) or ends (E-X)
    return kind in "IE" and continues
  return kind in "OBS"


def well_formed(scheme, tags):
  path = ["O"] + list(tags) + ["O"]
  return all(move_ok(scheme, previous, tag) for previous, tag in zip(path, path[1:]))


@pytest.mark.parametrize("scheme", ["iob1", "iob2", "bioes"])
def test_canonical_gold_is_well_formed_with_the_same_chunks(scheme):
  labels = BIOES_LABELS if scheme == "bioes" else IOB_LABELS
  tables = entities.build_tables(labels, scheme)
  rng = np.random.default_rng(3)
  width = 9
  gold = rng.integers(1, len(labels), size=[300, width])  # <unk> included: it reads as O
  lengths = rng.integers(0, width + 1, size=[300])
  fixed = entities.canonical(tables, tf.constant(gold), tf.constant(lengths)).numpy()
  as_o = np.where(gold == contract.UNK_ID, labels.index("O"), gold)
  sums = entities.chunk_sums(tables, tf.constant(as_o), tf.constant(fixed), tf.constant(lengths))
  assert float(sums["chunks_correct"]) == float(sums["chunks_gold"]) == float(sums["chunks_predicted"]) > 100
  for row, length in zip(fixed, lengths):
    assert well_formed(scheme, [labels[i] for i in row[:length]]), [labels[i] for i in row[:length]]
    assert (row[length:] == contract.PAD_ID).all()
  # The decoder's tables say what the definitions say, move by move.
  for p, previous in enumerate(labels):
    assert bool(tables.allowed_end[p]) == move_ok(scheme, previous, "O"), previous
    for c, label in enumerate(labels):
      assert bool(tables.allowed[p, c]) == move_ok(scheme, previous, label), (previous, label)
      assert bool(tables.allowed_start[c]) == move_ok(scheme, "O", label), label


def test_candidate_and_explicit_schemes():
  assert entities.candidate(IOB_LABELS) == "iob"
  assert entities.candidate(BIOES_LABELS) == "bioes"
  assert entities.candidate(RESERVED + ["O", "NOUN", "B-NP"]) == "none"  # a label of no scheme
  assert entities.candidate(RESERVED + ["B-PER", "I-PER"]) == "none"  # no O
  assert entities.candidate(RESERVED + ["O", "S-PER", "E-PER"]) == "none"  # no B- or I-
  assert entities.candidate(RESERVED) == "none"
  with pytest.raises(entities.SchemeError, match="use --tag_scheme bioes"):
    entities.resolve("iob2", BIOES_LABELS, [], None)
  with pytest.raises(entities.SchemeError, match="not a chunk tag set"):
    entities.resolve("bioes", RESERVED + ["O", "NOUN"], [], None)
  assert entities.resolve("bioes", IOB_LABELS, [], None) == "bioes"  # B-/I- are BIOES labels too
  assert entities.resolve("auto", BIOES_LABELS, [], None) == "bioes"  # no pass over the data


def test_iob1_and_iob2_corpora_are_told_apart_from_their_train_labels(chunk_tag_data, tmp_path):
  iob1 = tmp_path / "iob1.conll"
  write_conll(iob1, chunk_sentences(60, "iob1", seed=1))
  preprocess(iob1, tmp_path / "iob1", "conll", "tag", "--eval_fraction", "0.2")
  for data_dir, scheme in ((tmp_path / "iob1", "iob1"), (chunk_tag_data, "iob2")):
    metadata = contract.load_metadata(str(data_dir))
    labels = contract.read_vocab(metadata.labels_path(str(data_dir)))
    paths = contract.shard_paths(str(data_dir), metadata.raw, "train")
    assert entities.resolve("auto", labels, paths, metadata.compression) == scheme


def test_iob_evidence_counts_i_starts_and_stray_b_labels_per_row():
  rows = [["I-PER", "I-PER", "O", "I-LOC"], ["B-PER", "B-PER", "I-PER", "I-LOC", "B-LOC"], ["O", "<pad>", "I-PER"]]
  ids = tf.ragged.constant([[IOB_LABELS.index(l) for l in row] for row in rows], tf.int64)
  # I- starting a chunk: I-PER (row start), I-LOC after O, I-LOC after I-PER, I-PER after O
  # (the <pad> piece is no word). B- not after its type: the first B-PER of row 2 only.
  assert entities.iob_evidence(IOB_LABELS, ids).numpy().tolist() == [4, 1]


def test_the_best_step_is_the_one_with_the_best_f1_where_there_is_one():
  best = {"eval_loss": 0.5, "eval_accuracy": 0.95, "eval_f1": 0.70}
  assert metrics_lib.better({"eval_loss": 0.6, "eval_accuracy": 0.90, "eval_f1": 0.71}, best, "tag")
  assert not metrics_lib.better({"eval_loss": 0.4, "eval_accuracy": 0.99, "eval_f1": 0.69}, best, "tag")
  assert metrics_lib.better({"eval_loss": 0.4, "eval_accuracy": 0.90, "eval_f1": 0.70}, best, "tag")  # tie: loss
  assert metrics_lib.better({"eval_loss": 0.6, "eval_accuracy": 0.96}, {"eval_loss": 0.5, "eval_accuracy": 0.95},
                            "tag")  # no chunks: accuracy
