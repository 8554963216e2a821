"""WordPiece: subword pieces learned from the train split's word counts, applied in the graph.

With `--tokenizer wordpiece` the preprocessing_fn splits text into words as the word
tokenizer does (pipeline/tokenize.py), and this module turns words into pieces:

  learn     one `tft.experimental.ptransform_analyzer`: the graph counts each batch's
            distinct words, Beam merges the counts in hash partitions with the word
            vocabulary's compact counting (pipeline/vocabulary.py, `--vocab_partitions`),
            keeps each partition's `MAX_LEARNER_WORDS` most frequent words and its
            character counts, and TF Text's learner
            (`wordpiece_tokenizer_learner_lib`) turns the most frequent words overall
            into at most `--max_vocab - 2` pieces. The analyzer writes two assets: the
            pieces (`transform_fn/assets/tokens`, copied to vocab.txt) and the compiled
            `FastWordpieceTokenizer` model, which the graph reads into the tensor the
            tokenizer is built from (a model known only after analysis cannot be a
            Python constant at graph-construction time).
  apply     `tokenize_words`: words → piece ids with `FastWordpieceTokenizer`, plus a
            per-piece `word_start` flag (1 on the first piece of each word).

Ids: the tokenizer's model holds `<unk>` at index 0 and piece i at index i + 1, so
adding UNK_ID gives `<unk>` = UNK_ID and pieces from NUM_RESERVED, and no word, not even
a literal "<pad>", can map to PAD_ID. A word longer than MAX_BYTES_PER_WORD bytes, or one
with a character no piece covers, becomes one `<unk>` piece: never dropped.

    >>> learn([("hugs", 5), ("hug", 3), ("pug", 2)], vocab_size=20)
    ['g', 'h', 'p', 's', 'u', 'hugs', 'hug', 'pug', '##g', '##h', '##p', '##s', '##u']
"""

import collections
import logging
import os
import time
import uuid
from typing import Iterable, List, Sequence, Tuple

import apache_beam as beam
import tensorflow as tf
import tensorflow_text as tf_text
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_text.core.pybinds import pywrap_fast_wordpiece_tokenizer_model_builder as model_builder
from tensorflow_text.tools.wordpiece_vocab import wordpiece_tokenizer_learner_lib as learner_lib

import contract
from pipeline import token_counts
from pipeline import vocabulary as vocab_lib

SUFFIX_INDICATOR = "##"  # prefix of continuation pieces in vocab.txt
MAX_BYTES_PER_WORD = 100  # a longer word is one <unk> piece
MAX_PIECE_CHARS = 50  # the learner ignores longer words (their characters still count)
# The learner sees at most this many distinct words (the most frequent; each partition
# keeps this many, so a worker holds a bounded list whatever the corpus size). Rarer
# words add their characters only, so every character seen can still be spelled.
MAX_LEARNER_WORDS = 10_000
MAX_ALPHABET = 1000  # characters beyond the most frequent ones become <unk>
# Refinement passes per threshold tried. The learner's default is 4; on prose 2 give
# nearly the same pieces per word in less time, and the learner is the one step of the
# job that runs on a single worker (BENCHMARKS.md, wordpiece).
LEARNER_ITERATIONS = 2
MODEL_SUFFIX = ".fast_wordpiece_model"  # transform_fn/assets/tokens.fast_wordpiece_model
DEFAULT_MAX_VOCAB = 32_000  # without --max_vocab (pieces, <pad> and <unk>)


def num_pieces(max_vocab, task: str) -> int:
  """Pieces to learn for a --max_vocab (which counts the task's reserved ids; None: the default)."""
  return (max_vocab or DEFAULT_MAX_VOCAB) - contract.num_reserved(task)


def tokenizer_metadata(max_vocab, task: str) -> dict:
  """What metadata.json records under `tokenizer` for `--tokenizer wordpiece`."""
  return {"type": "wordpiece", "suffix_indicator": SUFFIX_INDICATOR,
          "max_bytes_per_word": MAX_BYTES_PER_WORD,
          "max_vocab": num_pieces(max_vocab, task) + contract.num_reserved(task),
          "learner": "tensorflow_text.tools.wordpiece_vocab.wordpiece_tokenizer_learner_lib"}


def learn(word_counts: Iterable[Tuple[str, int]], vocab_size: int, min_count: int = 1) -> List[str]:
  """(word, count) pairs → at most `vocab_size` pieces, continuation pieces with `##`.

  Deterministic: the same counts in any order give the same pieces in the same order
  (the learner's: single characters, then pieces by count and then alphabetically).
  Words holding a line end (possible in given tokens) or equal to `<unk>` are skipped,
  so every piece fits on one line of vocab.txt and none collides with `<unk>`.
  """
  words = sorted(((w, n) for w, n in word_counts if w and n >= min_count and not _unsafe(w)),
                 key=lambda item: (-item[1], item[0]))
  if not words or vocab_size <= 0:
    return []
  # The learner binary-searches a count threshold, a full pass over the words per step.
  # Starting from the most frequent word's count wastes most steps on thresholds that give
  # tiny vocabularies; start at the count of the word ranked vocab_size/10 instead.
  upper_thresh = words[min(len(words), max(vocab_size // 10, 1)) - 1][1]
  pieces = learner_lib.learn(
      words, vocab_size, reserved_tokens=[], upper_thresh=upper_thresh, lower_thresh=1,
      num_iterations=LEARNER_ITERATIONS, max_input_tokens=-1,
      max_token_length=MAX_PIECE_CHARS, max_unique_chars=MAX_ALPHABET, joiner=SUFFIX_INDICATOR)
  reserved = {contract.UNK_TOKEN, SUFFIX_INDICATOR + contract.UNK_TOKEN}
  pieces = [piece for piece in pieces if piece not in reserved]
  if len(pieces) > vocab_size:
    # The search can run out of thresholds with more pieces than asked for (small corpora:
    # one count step adds thousands of words). The learner orders the continuation
    # characters (`##e`) by count, so a plain cut drops them and leaves every word outside
    # the vocabulary unspellable (`<unk>`): keep the characters, then the most frequent rest.
    is_char = lambda piece: len(piece.removeprefix(SUFFIX_INDICATOR)) == 1
    chars = [piece for piece in pieces if is_char(piece)][:vocab_size]
    keep = set(chars + [piece for piece in pieces if not is_char(piece)][:vocab_size - len(chars)])
    pieces = [piece for piece in pieces if piece in keep]
  return pieces


def _unsafe(word: str) -> bool:
  return "\n" in word or "\r" in word or word == contract.UNK_TOKEN


def model_buffer(pieces: Sequence[str]) -> bytes:
  """The compiled FastWordpieceTokenizer model: index 0 `<unk>`, piece i at i + 1."""
  return model_builder.build_fast_wordpiece_model(
      [contract.UNK_TOKEN] + list(pieces), MAX_BYTES_PER_WORD, SUFFIX_INDICATOR, contract.UNK_TOKEN,
      True, False)  # no_pretokenization: the input is words already; no detokenization


def partition_summary(partition: Tuple[int, token_counts.TokenCounts]) -> Tuple[List[Tuple[str, int]], dict]:
  """One partition's merged word counts → (its MAX_LEARNER_WORDS most frequent, char counts).

  The partition is complete (every count of its words has been merged), so its top words
  are exact, and every character of every word is counted: rare words still spell.
  """
  _, counts = partition
  chars = collections.Counter()
  for word, n in zip(counts.tokens(), counts.counts.tolist()):
    for char in word.decode("utf-8", errors="replace"):
      chars[char] += n
  top = token_counts.select(counts, 1, MAX_LEARNER_WORDS)
  words = [(word.decode("utf-8", errors="replace"), n) for word, n in zip(top.tokens(), top.counts.tolist())]
  return words, dict(chars)


def learn_from_summaries(summaries: Iterable[Tuple[List[Tuple[str, int]], dict]], vocab_size: int,
                         min_count: int) -> List[str]:
  """Partition summaries → pieces; characters missing from the kept words join as 1-char words."""
  words, chars = [], collections.Counter()
  for partition_words, partition_chars in summaries:
    words += partition_words
    chars.update(partition_chars)
  words.sort(key=lambda item: (-item[1], item[0]))
  words = words[:MAX_LEARNER_WORDS]
  # Characters the learner will see: those of the words it keeps (not of longer ones).
  spelled = {char for word, _ in words if len(word) <= MAX_PIECE_CHARS for char in word}
  words += [(char, n) for char, n in chars.items() if char not in spelled]
  return learn(words, vocab_size, min_count)


class _LearnWordpiece(tft_beam.experimental.PTransformAnalyzer):
  """Batches of (distinct words, counts, partitions) → paths of the pieces file and the model file."""

  def __init__(self, file_name: str, vocab_size: int, min_count: int, num_partitions: int):
    super().__init__()
    self.file_name, self.vocab_size, self.min_count = file_name, vocab_size, min_count
    self.num_partitions = num_partitions

  def expand(self, batches):
    def write(summaries):
      start = time.perf_counter()
      pieces = learn_from_summaries(summaries, self.vocab_size, self.min_count)
      logging.info("WordPiece: learned %d pieces in %.1f s", len(pieces), time.perf_counter() - start)
      directory = os.path.join(self.base_temp_dir, uuid.uuid4().hex)
      tf.io.gfile.makedirs(directory)
      paths = [os.path.join(directory, self.file_name), os.path.join(directory, self.file_name + MODEL_SUFFIX)]
      with tf.io.gfile.GFile(paths[0], "wb") as f:
        f.write("".join(piece + "\n" for piece in pieces).encode("utf-8"))
      with tf.io.gfile.GFile(paths[1], "wb") as f:
        f.write(model_buffer(pieces))
      return [path.encode("utf-8") for path in paths]

    learned = (
        batches
        | "CountBatch" >> beam.FlatMap(vocab_lib.count_batch, self.num_partitions)
        | "MergePartitions" >> beam.CombinePerKey(vocab_lib.MergeCountsFn())
        | "Summarize" >> beam.Map(partition_summary)
        | "ToList" >> beam.combiners.ToList()
        | "Learn" >> beam.Map(write))
    return (learned | "PiecesPath" >> beam.Map(lambda paths: paths[0]),
            learned | "ModelPath" >> beam.Map(lambda paths: paths[1]))


def learn_tokenizer(words: tf.RaggedTensor, file_name: str, vocab_size: int, min_count: int = 1,
                    num_partitions: int = 1):
  """The analyzer: words → (pieces asset path, FastWordpieceTokenizer over the pieces).

  Both the pieces and the compiled model are assets of transform_fn/ (`file_name` and
  `file_name` + MODEL_SUFFIX): an analyzer's output is only known after analysis, and a
  file read by the graph (`tf.io.read_file`) is how a SavedModel carries such bytes.
  """
  pieces_path, model_path = tft.experimental.ptransform_analyzer(
      inputs=vocab_lib.count_tokens(words.flat_values),
      ptransform=_LearnWordpiece(file_name, vocab_size, min_count, num_partitions),
      output_dtypes=[tf.string, tf.string], output_shapes=[[], []],
      output_asset_default_values=[b"", model_buffer([])], name=f"wordpiece_{file_name}")
  model = tf.io.decode_raw(tf.io.read_file(model_path), tf.uint8)
  return pieces_path, tf_text.FastWordpieceTokenizer(model_buffer=model, token_out_type=tf.int64)


def tokenize_words(tokenizer, words: tf.RaggedTensor,
                   num_reserved: int = contract.NUM_RESERVED) -> Tuple[tf.RaggedTensor, tf.RaggedTensor]:
  """[batch, (words)] strings → piece ids [batch, (pieces)] and `word_start` of the same shape.

  Every word gives at least one piece, so `word_start` has one 1 per word:
  words [["hugs", "pug"]] with pieces hug ##s pug → ids of them, word_start [[1, 0, 1]].
  The first piece's id is `num_reserved` (3 for a language model, after </s>).
  """
  pieces = tokenizer.tokenize(words)  # [batch, (words), (pieces)]: index 0 is <unk>
  position = tf.ragged.range(pieces.values.row_lengths())  # each piece's place in its word
  word_start = tf.cast(position.flat_values == 0, tf.int64)
  index = pieces.flat_values  # 0: <unk>, i > 0: piece i - 1
  ids = tf.where(index > 0, index + (num_reserved - 1), tf.constant(contract.UNK_ID, tf.int64))
  return pieces.with_flat_values(ids).merge_dims(1, 2), pieces.with_flat_values(word_start).merge_dims(1, 2)


def piece_texts(tokenizer, words: tf.RaggedTensor) -> tf.RaggedTensor:
  """[batch, (words)] strings → each piece's own text [batch, (pieces)], as its word spells it
  (no `##`; a word that is one `<unk>` piece gives the whole word): what `--chars` splits.

  words [["hugs"]] with pieces hug ##s → [["hug", "s"]].
  """
  _, starts, ends = tokenizer.tokenize_with_offsets(words)  # byte offsets in the word
  word_of_piece = tf.repeat(words.flat_values, starts.values.row_lengths())
  texts = tf.strings.substr(word_of_piece, starts.flat_values, ends.flat_values - starts.flat_values)
  return starts.with_flat_values(texts).merge_dims(1, 2)


def spread_word_labels(label_ids: tf.RaggedTensor, word_start: tf.RaggedTensor) -> tf.RaggedTensor:
  """Word label ids [batch, (words)] → per piece: the word's label on its first piece, PAD_ID after.

  label ids [[7, 9]] with word_start [[1, 0, 1]] → [[7, PAD_ID, 9]]. A row with fewer labels
  than words (serving passes none) gets PAD_ID for the missing ones.
  """
  words_per_row = tf.reduce_sum(word_start, axis=1)
  piece_row = word_start.value_rowids()
  word_in_batch = tf.cumsum(word_start.flat_values) - 1
  word_in_row = word_in_batch - tf.gather(tf.cumsum(words_per_row, exclusive=True), piece_row)
  width = tf.reduce_max(tf.concat([words_per_row, [0]], axis=0))
  shape = tf.stack([tf.shape(words_per_row, tf.int64)[0], width])
  dense = label_ids.to_tensor(default_value=contract.PAD_ID, shape=shape)
  per_piece = tf.gather_nd(dense, tf.stack([piece_row, word_in_row], axis=1))
  flat = tf.where(word_start.flat_values > 0, per_piece, tf.constant(contract.PAD_ID, tf.int64))
  return word_start.with_flat_values(flat)
