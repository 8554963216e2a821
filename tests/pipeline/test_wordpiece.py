"""--tokenizer wordpiece: the learner, the in-graph tokenizer against a Python oracle, the CLI.

The oracle is WordPiece's definition (greedy longest match first, continuation pieces
with `##`, a word that cannot be spelled is one `<unk>`), written out here in Python,
independent of TF Text's FastWordpieceTokenizer that the pipeline runs.
"""

import os
import random

import numpy as np
import tensorflow as tf

import contract
from pipeline import wordpiece
from tests.conftest import preprocess, read_metadata, read_records, truncated_chars
from tests.pipeline.conftest import SENTENCES


def oracle_pieces(word, pieces):
  """WordPiece by definition: greedy longest match first; None if the word cannot be spelled."""
  if len(word.encode("utf-8")) > wordpiece.MAX_BYTES_PER_WORD:
    return None
  found, start = [], 0
  while start < len(word):
    end = len(word)
    while end > start and (word[start:end] if start == 0 else "##" + word[start:end]) not in pieces:
      end -= 1
    if end == start:
      return None
    found.append(word[start:end] if start == 0 else "##" + word[start:end])
    start = end
  return found


def oracle_ids(words, pieces):
  """Words → (ids, word_start) as the pipeline numbers pieces (pieces from NUM_RESERVED)."""
  index = {piece: i + contract.NUM_RESERVED for i, piece in enumerate(pieces)}
  ids, starts = [], []
  for word in words:
    spelled = oracle_pieces(word, index)
    spelled_ids = [index[p] for p in spelled] if spelled else [contract.UNK_ID]
    ids += spelled_ids
    starts += [1] + [0] * (len(spelled_ids) - 1)
  return ids, starts


# --- the learner ---------------------------------------------------------------------

def test_learner_on_tiny_counts_hand_checked():
  # Threshold search starts at the count of the word ranked vocab_size/10 (here "hug", 3) and
  # settles where every whole word survives: hugs 5, hug 3 (8 minus the 5 inside "hugs"),
  # pug 2. Every character is kept alone and as a continuation, so every word is spellable.
  counts = [("hugs", 5), ("hug", 3), ("pug", 2)]
  expected = ["g", "h", "p", "s", "u", "hugs", "hug", "pug", "##g", "##h", "##p", "##s", "##u"]
  assert wordpiece.learn(counts, vocab_size=20) == expected
  shuffled = counts[::-1]
  assert wordpiece.learn(shuffled, vocab_size=20) == expected  # input order does not matter
  assert wordpiece.learn(counts, vocab_size=5) == expected[:5]  # the cap holds; characters first
  assert wordpiece.learn(counts, vocab_size=20, min_count=3) == ["g", "h", "s", "u", "hugs", "hug",
                                                                 "##g", "##h", "##s", "##u"]
  assert wordpiece.learn([], vocab_size=20) == []


def test_learner_keeps_every_character_when_it_overshoots_the_size():
  # Counts of 1 and 2 leave the threshold search nothing between "every substring" and
  # "almost nothing": the learner returns far more than 60 pieces, its continuation
  # characters among the least frequent. The cut to 60 must keep them: every word spells.
  rng = random.Random(1)
  counts = [("".join(rng.choice("abcdefgh") for _ in range(rng.randint(2, 9))), rng.randint(1, 2))
            for _ in range(400)]
  pieces = wordpiece.learn(counts, vocab_size=60)
  assert len(pieces) == 60 and pieces == wordpiece.learn(counts[::-1], vocab_size=60)
  assert {"##" + char for char in "abcdefgh"} <= set(pieces)
  assert all(oracle_pieces(word, set(pieces)) for word, _ in counts)
  assert sum(len(piece.lstrip("#")) > 1 for piece in pieces) == 60 - 16  # the rest: longer pieces


def test_learner_skips_words_that_would_break_vocab_txt_or_collide_with_unk():
  pieces = wordpiece.learn([("a\nb", 9), (contract.UNK_TOKEN, 9), ("ab", 2)], vocab_size=50)
  assert all("\n" not in p for p in pieces)
  assert contract.UNK_TOKEN not in pieces and "##" + contract.UNK_TOKEN not in pieces
  assert "ab" in pieces


def test_characters_of_words_left_out_of_the_learner_are_still_spelled():
  kept = [(f"w{i}", 100 - i) for i in range(5)]
  summaries = [(kept, {"w": 490, "0": 100, "1": 99, "2": 98, "3": 97, "4": 96, "é": 1})]
  pieces = wordpiece.learn_from_summaries(summaries, vocab_size=100, min_count=1)
  assert "é" in pieces and "##é" in pieces


# --- the in-graph tokenizer against the oracle -------------------------------------------

def tokenize(words_batch, pieces):
  model = tf.io.decode_raw(tf.constant(wordpiece.model_buffer(pieces)), tf.uint8)
  import tensorflow_text as tf_text  # pylint: disable=g-import-not-at-top
  tokenizer = tf_text.FastWordpieceTokenizer(model_buffer=model, token_out_type=tf.int64)
  ids, word_start = wordpiece.tokenize_words(tokenizer, tf.ragged.constant(words_batch, tf.string))
  return ids.to_list(), word_start.to_list()


def test_tokenizer_matches_the_oracle_on_random_words_including_long_and_unspellable_ones():
  rng = random.Random(0)
  alphabet = "abcdeé"
  counts = [("".join(rng.choice(alphabet[:5]) for _ in range(rng.randint(1, 8))), rng.randint(1, 50))
            for _ in range(300)]
  pieces = wordpiece.learn(counts, vocab_size=60)
  assert any(p.startswith("##") for p in pieces) and any(len(p) > 1 and "#" not in p for p in pieces)
  batch = [["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(rng.randint(0, 6))]
           for _ in range(200)]
  batch[0] = ["a" * (wordpiece.MAX_BYTES_PER_WORD + 1), "b" * wordpiece.MAX_BYTES_PER_WORD, "xyz"]
  ids, word_start = tokenize(batch, pieces)
  for words, row_ids, row_starts in zip(batch, ids, word_start):
    assert (row_ids, row_starts) == oracle_ids(words, pieces)
  # A word over MAX_BYTES_PER_WORD is one <unk>, an unspellable one too; neither is dropped.
  assert ids[0][0] == contract.UNK_ID and word_start[0][0] == 1
  assert ids[0][-1] == contract.UNK_ID and sum(word_start[0]) == 3
  assert len(ids[0]) <= 2 + wordpiece.MAX_BYTES_PER_WORD  # a long word has a bounded number of pieces


def test_empty_vocabulary_makes_every_word_one_unk():
  ids, word_start = tokenize([["any", "words"], []], [])
  assert ids == [[contract.UNK_ID, contract.UNK_ID], []] and word_start == [[1, 1], []]


def test_word_labels_go_to_first_pieces():
  labels = tf.ragged.constant([[7, 9], [4]], tf.int64)
  word_start = tf.ragged.constant([[1, 0, 0, 1], [1, 0]], tf.int64)
  spread = wordpiece.spread_word_labels(labels, word_start).to_list()
  assert spread == [[7, contract.PAD_ID, contract.PAD_ID, 9], [4, contract.PAD_ID]]
  no_labels = tf.ragged.constant([[], []], tf.int64)  # serving: text without labels
  spread = wordpiece.spread_word_labels(no_labels, word_start).to_list()
  assert spread == [[contract.PAD_ID] * 4, [contract.PAD_ID] * 2]


# --- the CLI end to end ----------------------------------------------------------------

def oracle_piece_chars(words, pieces, char_vocab, max_token_chars):
  """Each piece's own text (no ##; a word no pieces spell: the whole word), cut as
  --max_token_chars cuts it, as ids of chars.txt (unseen characters: <unk>)."""
  index = {char: i for i, char in enumerate(char_vocab) if i >= contract.NUM_RESERVED}
  texts = []
  for word in words:
    found = oracle_pieces(word, pieces)
    texts += [piece[2:] if piece.startswith("##") else piece for piece in found] if found else [word]
  return [[index.get(char, contract.UNK_ID) for char in truncated_chars(text, max_token_chars)] for text in texts]


def test_cli_vocab_ids_and_labels_on_first_pieces(wordpiece_tag_run):
  output_dir = wordpiece_tag_run
  vocab = contract.read_vocab(os.path.join(output_dir, contract.VOCAB_FILE))
  labels = contract.read_vocab(os.path.join(output_dir, contract.LABELS_FILE))
  assert vocab[:contract.NUM_RESERVED] == list(contract.RESERVED_TOKENS)
  pieces = vocab[contract.NUM_RESERVED:]
  assert 0 < len(pieces) <= 40 - contract.NUM_RESERVED and len(set(pieces)) == len(pieces)
  assert any(p.startswith("##") for p in pieces)
  metadata = read_metadata(output_dir)
  assert metadata["tokenizer"]["type"] == "wordpiece" and metadata["vocab"]["size"] == len(vocab)
  by_words = {tuple(w for w, _ in s): s for s in SENTENCES}
  char_vocab = contract.read_vocab(os.path.join(output_dir, contract.CHARS_FILE))  # tag: --chars by default
  assert metadata["chars"]["max_token_chars"] == 16 and "counts_file" not in metadata["vocab"]  # pieces: no counts
  unknown = total = 0
  for split in contract.TRAINING_SPLITS:
    for record in read_records(output_dir, split):
      words = [vocab[i] for i in record["tokens"] if i > contract.UNK_ID and not vocab[i].startswith("##")]
      matches = [s for key, s in by_words.items() if oracle_ids(key, pieces)[0] == record["tokens"].tolist()]
      assert len(matches) == 1, (record, words)
      sentence = matches[0]
      ids, starts = oracle_ids([w for w, _ in sentence], pieces)
      expected_labels = []
      word_labels = iter(labels.index(label) for _, label in sentence)
      for start in starts:
        expected_labels.append(next(word_labels) if start else contract.PAD_ID)
      assert record["labels"].tolist() == expected_labels
      assert record["length"] == len(ids)
      assert record["chars"] == oracle_piece_chars([w for w, _ in sentence], pieces, char_vocab, 16)
      unknown += int(np.sum(record["tokens"] == contract.UNK_ID))
      total += len(ids)
    split_info = metadata["splits"][split]
    assert split_info["characters"] > split_info["tokens"] or split_info["examples"] == 0
  assert metadata["splits"]["train"]["tokens"] > 0
  assert unknown > 0  # the long word
  rates = metadata["unk_rate"]
  pooled = sum(rates[s] * metadata["splits"][s]["tokens"] for s in contract.TRAINING_SPLITS)
  assert round(pooled) == unknown and total == sum(metadata["splits"][s]["tokens"] for s in contract.TRAINING_SPLITS)


def serve(output_dir, texts, given=None):
  transform = contract.load_saved_model(os.path.join(output_dir, contract.TRANSFORM_FN_DIR))
  given = given or [[] for _ in texts]
  features = {"text": tf.constant(texts), "tokens": tf.ragged.constant(given, tf.string, row_splits_dtype=tf.int64)}
  if read_metadata(output_dir)["task"] == "tag":
    features["labels"] = tf.ragged.constant([[] for _ in texts], tf.string, row_splits_dtype=tf.int64)
  return transform.transform_fn(features)


def test_serving_transform_fn_tokenizes_like_the_shards(wordpiece_tag_run):
  output_dir = wordpiece_tag_run
  records = read_records(output_dir, "train")
  vocab = contract.read_vocab(os.path.join(output_dir, contract.VOCAB_FILE))
  pieces = vocab[contract.NUM_RESERVED:]
  sentences = [[w for w, _ in s] for s in SENTENCES[:4]]
  served = serve(output_dir, [" ".join(words) for words in sentences])
  shard_rows = {tuple(r["tokens"].tolist()) for r in records}
  shard_chars = {tuple(r["tokens"].tolist()): r["chars"] for r in records}
  for words, ids, starts, chars in zip(sentences, served[contract.TOKENS].to_list(), served["word_start"].to_list(),
                                       served[contract.CHARS].to_list()):
    assert (ids, starts) == oracle_ids(words, pieces)
    assert tuple(ids) in shard_rows and chars == shard_chars[tuple(ids)]


def test_empty_learned_vocabulary_serves_all_unk(tmp_path):
  corpus = tmp_path / "tiny.txt"
  corpus.write_text("two words\nthree more words\none two three four\n", encoding="utf-8")
  output_dir = tmp_path / "out"
  preprocess(corpus, output_dir, "text", "lm", "--tokenizer", "wordpiece", "--min_count", "1000",
             "--eval_fraction", "0", "--max_length", "3")
  assert contract.read_vocab(str(output_dir / contract.VOCAB_FILE)) == list(contract.LM_RESERVED_TOKENS)
  metadata = read_metadata(output_dir)
  assert metadata["unk_rate"]["train"] == 1.0 and metadata["vocab"]["size"] == contract.num_reserved("lm")
  # 4 words of one piece each, cut to 3 pieces: counted as truncated although no word had 2 pieces.
  assert metadata["counts"]["truncated"] == 1 and metadata["splits"]["train"]["tokens"] == 2 + 3 + 3
  served = serve(str(output_dir), ["never seen, at all", ""])
  assert served[contract.TOKENS].to_list() == [[contract.UNK_ID] * 3, []]


def test_inspect_joins_pieces_back_into_words(wordpiece_tag_run):
  from pipeline import inspect  # pylint: disable=g-import-not-at-top
  output_dir = wordpiece_tag_run
  lines = inspect.example_lines(output_dir, contract.load_metadata(output_dir), "train", 30)
  assert "pieces joined into words" in lines[0]
  pieces = set(contract.read_vocab(os.path.join(output_dir, contract.VOCAB_FILE))[contract.NUM_RESERVED:])
  shown = lambda word: word if oracle_pieces(word, pieces) else contract.UNK_TOKEN  # pylint: disable=unnecessary-lambda-assignment
  expected = {" ".join(f"{shown(w)}/{label}" for w, label in s) for s in SENTENCES}
  for line in lines[1:]:
    assert line.split("] ", 1)[1] in expected, line
  assert contract.join_pieces(["un", "##help", "##ful", "cat"], ["ADJ", "<pad>", "<pad>", "NOUN"], "##") == (
      ["unhelpful", "cat"], ["ADJ", "NOUN"])
