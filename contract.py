"""The on-disk contract shared by the pipeline and the trainer.

This module is the one place that names the special ids, the feature names and the
files of an OUTPUT_DIR, and the one place that reads them back. It imports neither
Apache Beam nor TensorFlow Transform, so the trainer can use it without pulling them
in (importing TFT switches `tf.keras` to the legacy package).
"""

import dataclasses
import json
import os
import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import tensorflow as tf

FORMAT_VERSION = 1

# Special ids: the same for the token and the label vocabulary. Nothing else in the
# project writes these literals: "id 0" is padding, so a mask is simply `ids != PAD_ID`.
PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
PAD_ID = 0
UNK_ID = 1
RESERVED_TOKENS = (PAD_TOKEN, UNK_TOKEN)
NUM_RESERVED = len(RESERVED_TOKENS)
# Language models (`--task lm`) reserve one id more in the token vocabulary: the end of
# every sequence, a target the model predicts (and, as the input before a sequence's first
# token, where it starts from). Real tokens then start at LM_NUM_RESERVED.
EOS_TOKEN = "</s>"
EOS_ID = 2
LM_RESERVED_TOKENS = RESERVED_TOKENS + (EOS_TOKEN,)


def reserved_tokens(task: str):
  """The reserved entries at the head of a task's token vocabulary."""
  return LM_RESERVED_TOKENS if task == "lm" else RESERVED_TOKENS


def num_reserved(task: str) -> int:
  """Ids below this are reserved in a task's token vocabulary (labels: always NUM_RESERVED)."""
  return len(reserved_tokens(task))

# Feature names of the SequenceExample.
LENGTH = "length"  # context, int64 >= 1
TOKENS = "tokens"  # feature list, one int64 per time step
LABELS = "labels"  # feature list (tag), one int64 per time step
LABEL = "label"  # context (classify), int64 >= 2 for a known label
# Feature list (`--chars`; tag by default): per time step, that token's character ids, as
# many as it has characters (at most the pipeline's --max_token_chars). The one feature
# whose steps hold several values; its ids come from the character vocabulary (chars.txt).
CHARS = "chars"

TASKS = ("lm", "tag", "classify")
FORMATS = ("text", "jsonl", "conll", "conllu", "parquet")
SPLITS = ("train", "eval", "test")  # test: written only from --test_input, and never read by trainer.task
TRAINING_SPLITS = ("train", "eval")
NUM_BUCKETS_CHOICES = (4, 8, 16, 32)

# Files of an OUTPUT_DIR.
METADATA_FILE = "metadata.json"
COMPLETED_FILE = "COMPLETED"
VOCAB_FILE = "vocab.txt"
LABELS_FILE = "labels.txt"
CHARS_FILE = "chars.txt"  # the character vocabulary: line i = the character with id i
VOCAB_COUNTS_FILE = "vocab_counts.txt"  # line i = train occurrences of vocab.txt's entry i
TRANSFORM_FN_DIR = "transform_fn"
TRANSFORMED_METADATA_DIR = "transformed_metadata"
ERRORS_DIR = "errors"


class DataDirError(ValueError):
  """An OUTPUT_DIR that a reader must refuse, with a message that says what to do."""


def shard_name(split: str, index: int, num_shards: int, compression: str = "none") -> str:
  """The file name of one shard, e.g. `train-00003-of-00008.tfrecord.gz`."""
  suffix = ".tfrecord.gz" if compression == "gzip" else ".tfrecord"
  return f"{split}-{index:05d}-of-{num_shards:05d}{suffix}"


def raw_columns(task: str) -> List[str]:
  """The raw inputs of the pipeline's preprocessing_fn, i.e. of `transform_fn/`.

  `text` is tokenized by the graph, `tokens` are given tokens (exactly one is non-empty
  per record); `labels` (tag, per token) and `label` (classify) are label strings.
  """
  return ["text", "tokens"] + {"tag": ["labels"], "classify": ["label"]}.get(task, [])


def feature_spec(task: str, chars: bool = False) -> Dict[str, Dict[str, str]]:
  """Names and dtypes of the record's features, as written in metadata.json.

  `sequence` lists the feature lists of one value per step, `sequence_values` those whose
  steps hold any number of values (CHARS, with `chars`).
  """
  context = {LENGTH: "int64"}
  sequence = {TOKENS: "int64"}
  if task == "tag":
    sequence[LABELS] = "int64"
  elif task == "classify":
    context[LABEL] = "int64"
  spec = {"context": context, "sequence": sequence}
  if chars:
    spec["sequence_values"] = {CHARS: "int64"}
  return spec


def parsing_spec(task: str, chars: bool = False):
  """`tf.io.parse_sequence_example` feature specs (context, sequence) for a task.

  One-value feature lists parse to [time] (FixedLenSequenceFeature), CHARS (with `chars`)
  to a ragged [time, (chars)] (RaggedFeature; [batch, (time), (chars)] for a batch).
  """
  spec = feature_spec(task, chars)
  context = {name: tf.io.FixedLenFeature([], tf.int64) for name in spec["context"]}
  sequence = {name: tf.io.FixedLenSequenceFeature([], tf.int64) for name in spec["sequence"]}
  for name in spec.get("sequence_values", {}):
    sequence[name] = tf.io.RaggedFeature(tf.int64, row_splits_dtype=tf.int64)
  return context, sequence


def read_vocab(path: str) -> List[str]:
  """Reads a vocabulary file: line i is the entry with id i.

  Splits on '\\n' only: a token may hold characters such as U+2028 that
  `str.splitlines()` would treat as line ends.
  """
  with tf.io.gfile.GFile(path, "rb") as f:
    text = f.read().decode("utf-8")
  if text.endswith("\n"):
    text = text[:-1]
  return text.split("\n") if text else []


def read_metadata(data_dir: str) -> dict:
  """Reads and checks metadata.json of a finished OUTPUT_DIR.

  Raises:
    DataDirError: the directory is not a complete output of a compatible pipeline.
  """
  if not tf.io.gfile.isdir(data_dir):
    raise DataDirError(f"{data_dir}: no such directory; pass the --output_dir of pipeline.preprocess")
  if not tf.io.gfile.exists(os.path.join(data_dir, COMPLETED_FILE)):
    raise DataDirError(
        f"{data_dir}: no {COMPLETED_FILE} marker, so the pipeline did not finish; "
        "rerun pipeline.preprocess with --overwrite")
  try:
    with tf.io.gfile.GFile(os.path.join(data_dir, METADATA_FILE)) as f:
      metadata = json.load(f)
  except (tf.errors.NotFoundError, ValueError) as error:
    raise DataDirError(f"{data_dir}: unreadable {METADATA_FILE} ({type(error).__name__}); "
                       "rerun pipeline.preprocess with --overwrite") from None
  version = metadata.get("format_version")
  if version != FORMAT_VERSION:
    raise DataDirError(
        f"{data_dir}: format_version {version}, this code reads {FORMAT_VERSION}; "
        "rerun pipeline.preprocess with this version")
  return metadata


@dataclasses.dataclass(frozen=True)
class Metadata:
  """A typed view of metadata.json: the one place that knows its keys and JSON encodings.

  Histograms come as {int length: count}; bucket boundaries as {int K: [b1, ..., bK]}.
  `raw` is the whole dict as read, for the keys without a field here.

  >>> m = Metadata.from_dict({"task": "tag", "vocab": {"file": "vocab.txt", "size": 7},
  ...     "labels": {"file": "labels.txt", "size": 5}, "length_histogram": {"train": {"3": 2}},
  ...     "bucket_boundaries": {"4": {"boundaries": [3], "padding_waste": 0.0}},
  ...     "splits": {"train": {"examples": 2, "tokens": 6, "shards": []}}, "options": {}})
  >>> m.num_classes, m.length_histogram["train"], m.boundaries(4)
  (5, {3: 2}, [3])
  """
  raw: Mapping
  task: str
  vocab_size: int
  label_size: Optional[int]  # tag and classify: the label vocabulary's size, <pad> and <unk> included
  length_histogram: Dict[str, Dict[int, int]]
  bucket_boundaries: Dict[int, List[int]]
  padding_waste: Dict[int, Optional[float]]  # of bucket_boundaries[K] on the train lengths
  splits: Mapping[str, Mapping]
  options: Mapping  # the pipeline's options (format, compression, ...)
  counts: Mapping  # read, written, truncated; filtered and dead_letter as {reason: n}
  unk_rate: Mapping[str, float]  # per split: the share of written tokens that are <unk>
  tokenizer: Optional[str]  # "word", "whitespace" or "wordpiece"; None in outputs that predate --tokenizer
  eos_id: Optional[int] = None  # lm: the end-of-sequence id; None in lm outputs that predate it
  char_vocab_size: Optional[int] = None  # with CHARS: chars.txt's size, <pad> and <unk> included

  @classmethod
  def of(cls, metadata: Union["Metadata", Mapping]) -> "Metadata":
    """`metadata` as a Metadata: itself, or metadata.json's dict read into one."""
    return metadata if isinstance(metadata, cls) else cls.from_dict(metadata)

  @classmethod
  def from_dict(cls, metadata: Mapping) -> "Metadata":
    buckets = metadata.get("bucket_boundaries", {})
    return cls(
        raw=metadata, task=metadata["task"], vocab_size=metadata["vocab"]["size"],
        label_size=metadata["labels"]["size"] if "labels" in metadata else None,
        length_histogram={split: int_histogram(histogram)
                          for split, histogram in metadata.get("length_histogram", {}).items()},
        bucket_boundaries={int(k): list(v["boundaries"]) for k, v in buckets.items()},
        padding_waste={int(k): v.get("padding_waste") for k, v in buckets.items()},
        splits=metadata.get("splits", {}), options=metadata.get("options", {}), counts=metadata.get("counts", {}),
        unk_rate=metadata.get("unk_rate", {}), tokenizer=metadata.get("tokenizer", {}).get("type"),
        eos_id=metadata["vocab"].get("eos_id"),
        char_vocab_size=metadata["chars"]["size"] if "chars" in metadata else None)

  @property
  def has_chars(self) -> bool:
    """Whether the records hold the CHARS feature list."""
    return self.char_vocab_size is not None

  @property
  def max_token_chars(self) -> int:
    """The most characters a CHARS step holds (the pipeline's --max_token_chars); 0 without CHARS."""
    return self.raw["chars"].get("max_token_chars", 0) if self.has_chars else 0

  @property
  def num_classes(self) -> int:
    """Output classes of the model's head: the token vocabulary (lm) or the label vocabulary."""
    return self.vocab_size if self.task == "lm" else self.label_size

  @property
  def compression(self) -> Optional[str]:
    """The `tf.data.TFRecordDataset` compression type of the shards."""
    return compression_type(self.raw)

  @property
  def wordpiece_suffix(self) -> Optional[str]:
    """The prefix of continuation pieces in vocab.txt ("##") with `--tokenizer wordpiece`, else None."""
    return self.raw["tokenizer"].get("suffix_indicator") if self.tokenizer == "wordpiece" else None

  def boundaries(self, num_buckets: int) -> List[int]:
    """The pipeline's optimal bucket boundaries for `num_buckets` buckets ([1] if none)."""
    return self.bucket_boundaries.get(num_buckets) or [1]

  @property
  def split_names(self) -> List[str]:
    """The splits this output holds, in contract order (test only where --test_input gave one)."""
    return [split for split in SPLITS if split in self.splits]

  def examples(self, split: str) -> int:
    return self.splits.get(split, {}).get("examples", 0)

  def tokens(self, split: str) -> int:
    return self.splits.get(split, {}).get("tokens", 0)

  def characters(self, split: str) -> int:
    """Characters of the split's written text (given tokens joined by spaces)."""
    return self.splits.get(split, {}).get("characters", 0)

  def shards(self, split: str) -> List[Mapping]:
    """The split's shards as metadata.json lists them: {"file", "examples", "bytes"}."""
    return self.splits.get(split, {}).get("shards", [])

  def vocab_path(self, data_dir: str) -> str:
    return os.path.join(data_dir, self.raw["vocab"]["file"])

  def labels_path(self, data_dir: str) -> Optional[str]:
    return os.path.join(data_dir, self.raw["labels"]["file"]) if "labels" in self.raw else None

  def chars_path(self, data_dir: str) -> Optional[str]:
    return os.path.join(data_dir, self.raw["chars"]["file"]) if self.has_chars else None

  def vocab_counts_path(self, data_dir: str) -> Optional[str]:
    """VOCAB_COUNTS_FILE, where the pipeline wrote one (word vocabularies learned by it)."""
    name = self.raw["vocab"].get("counts_file")
    return os.path.join(data_dir, name) if name else None


def kept_chars(token: str, max_token_chars: int) -> str:
  """The characters of a token that CHARS holds: all of them, or the first
  `max_token_chars - max_token_chars // 2` and the last `max_token_chars // 2` (the
  pipeline does the same in its graph, pipeline/chars.py).

  >>> kept_chars("internationalization", 16), kept_chars("cat", 16)
  ('internatlization', 'cat')
  """
  if len(token) <= max_token_chars:
    return token
  return token[:max_token_chars - max_token_chars // 2] + token[len(token) - max_token_chars // 2:]


def read_vocab_counts(path: str) -> List[int]:
  """Reads VOCAB_COUNTS_FILE: line i is the train count of the vocabulary's entry i."""
  with tf.io.gfile.GFile(path) as f:
    return [int(line) for line in f.read().split()]


def int_histogram(histogram: Mapping) -> Dict[int, int]:
  """A length histogram as JSON has it ({"3": 2}) → {3: 2}, sorted by length."""
  return {int(length): int(count) for length, count in sorted(histogram.items(), key=lambda kv: int(kv[0]))}


def histogram_to_json(histogram: Mapping[int, int]) -> Dict[str, int]:
  """{3: 2} → {"3": 2}, sorted by length: how metadata.json stores a histogram."""
  return {str(length): histogram[length] for length in sorted(histogram)}


def load_metadata(data_dir: str) -> Metadata:
  """`read_metadata` as a typed `Metadata` view."""
  return Metadata.from_dict(read_metadata(data_dir))


def load_saved_model(path: str):
  """`tf.saved_model.load`, after registering TF Text's ops, which a `--tokenizer wordpiece`
  transform_fn (and so an export) holds: without the import such a model does not load."""
  import tensorflow_text  # pylint: disable=g-import-not-at-top,unused-import
  return tf.saved_model.load(path)


def lm_inputs(tokens, eos_id: Optional[int]):
  """What a language model reads: each sequence after an EOS_ID, where it starts from.

  [[5, 6, 7, 0]] → [[2, 5, 6, 7, 0]]. With `eos_id` None (an output that predates end
  targets: metadata.json has no `vocab.eos_id`), the tokens themselves.
  """
  if eos_id is None:
    return tokens
  return tf.concat([tf.fill(tf.stack([tf.shape(tokens)[0], 1]), tf.cast(eos_id, tokens.dtype)), tokens], axis=1)


def lm_targets(tokens, length, eos_id: Optional[int]):
  """The language model's targets, position by position of `lm_inputs`: the next token, and
  after the last one EOS_ID, so each sequence of n tokens has n + 1 targets.

  [[5, 6, 7, 0]] of length [3] → [[5, 6, 7, 2, 0]]. With `eos_id` None (an older output),
  the next token and nothing after the last: [[6, 7, 0, 0]]. PAD_ID is "no target".
  """
  if eos_id is None:
    return tf.concat([tokens[:, 1:], tf.zeros_like(tokens[:, :1])], axis=1)
  padded = tf.concat([tokens, tf.zeros_like(tokens[:, :1])], axis=1)
  at_end = tf.range(tf.shape(padded, out_type=length.dtype)[1])[None, :] == length[:, None]
  return tf.where(at_end, tf.cast(eos_id, tokens.dtype), padded)


def join_pieces(pieces: Sequence[str], labels: Sequence[str], suffix: str) -> Tuple[List[str], List[str]]:
  """WordPiece pieces → words (a piece starting with `suffix` continues the word before it),
  each with the label of its first piece.

  >>> join_pieces(["un", "##help", "##ful", "cat"], ["ADJ", "<pad>", "<pad>", "NOUN"], "##")
  (['unhelpful', 'cat'], ['ADJ', 'NOUN'])
  """
  words, word_labels = [], []
  for piece, label in zip(pieces, labels):
    if piece.startswith(suffix) and words:
      words[-1] += piece[len(suffix):]
    else:
      words.append(piece)
      word_labels.append(label)
  return words, word_labels


def shard_paths(data_dir: str, metadata: dict, split: str) -> List[str]:
  """Full paths of a split's shards, checked to exist with the size metadata.json records.

  A size check is cheap and catches a truncated, replaced or appended-to shard before
  any GPU time is spent; flipped bytes are caught by the TFRecord CRC when read.
  """
  shards = metadata["splits"].get(split, {}).get("shards", [])
  paths = []
  for shard in shards:
    path = os.path.join(data_dir, shard["file"])
    if not tf.io.gfile.exists(path):
      raise DataDirError(f"{path}: shard listed in {METADATA_FILE} is missing; "
                         "rerun pipeline.preprocess with --overwrite")
    size = tf.io.gfile.stat(path).length
    if "bytes" in shard and size != shard["bytes"]:
      raise DataDirError(f"{path}: {size} bytes, but {METADATA_FILE} says {shard['bytes']}: the shard was "
                         "truncated or changed after the pipeline wrote it; rerun pipeline.preprocess --overwrite")
    paths.append(path)
  return paths


def count_records(paths: List[str], compression: Optional[str] = None) -> List[int]:
  """Records in each TFRecord file, counted in the runtime, files in parallel.

  Every record's CRC is checked: raises tf.errors.DataLossError on a damaged file.
  """
  if not paths:
    return []
  files = tf.data.Dataset.from_tensor_slices((list(paths), tf.range(len(paths), dtype=tf.int64)))
  sizes = files.interleave(
      lambda path, index: tf.data.TFRecordDataset(path, compression_type=compression, buffer_size=1 << 20)
      .batch(8192).map(lambda batch: tf.stack([index, tf.shape(batch, out_type=tf.int64)[0]])),
      cycle_length=max(1, min(len(paths), 8)), num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
  counts = [0] * len(paths)
  for chunk in sizes.batch(4096).as_numpy_iterator():
    for index, size in chunk.tolist():
      counts[index] += size
  return counts


def check_counts(data_dir: str, metadata: dict, splits: Sequence[str] = SPLITS) -> int:
  """Checks metadata.json's counts against each other and against every shard's records
  of `splits` (the trainer leaves test alone: it never reads it).

  Reads every shard once, files in parallel (BENCHMARKS.md has the cost). Returns the
  records counted.

  Raises:
    DataDirError: a count disagrees, or a shard is damaged (bad CRC, truncated record).
  """
  compression = compression_type(metadata)
  rerun = "rerun pipeline.preprocess --overwrite"
  shards, paths = [], []
  checked = [split for split in metadata["splits"] if split in splits]
  for split in checked:
    info = metadata["splits"][split]
    listed = sum(shard["examples"] for shard in info["shards"])
    if listed != info["examples"]:
      raise DataDirError(f"{data_dir}: {METADATA_FILE} lists {listed} {split} examples in its shards but "
                         f"{info['examples']} for the split; {rerun}")
    shards += info["shards"]
    paths += shard_paths(data_dir, metadata, split)
  try:
    counts = count_records(paths, compression)
  except tf.errors.DataLossError as error:
    raise DataDirError(f"{find_corrupt_record(paths, compression) or error.message}; {rerun}") from None
  for shard, path, found in zip(shards, paths, counts):
    if found != shard["examples"]:
      raise DataDirError(f"{path}: {found} records, but {METADATA_FILE} says {shard['examples']}; {rerun}")
  total = sum(counts)
  written = metadata.get("counts", {}).get("written", total)
  if len(checked) == len(metadata["splits"]) and written != total:
    raise DataDirError(f"{data_dir}: the shards hold {total} records, but {METADATA_FILE} counts {written} "
                       f"written; {rerun}")
  return total


def find_corrupt_record(paths: List[str], compression: Optional[str] = None) -> Optional[str]:
  """Reads each file alone to name the one a DataLossError came from (run only on failure)."""
  for path in paths:
    try:
      for _ in tf.data.TFRecordDataset(path, compression_type=compression):
        pass
    except tf.errors.DataLossError as error:
      found = re.search(r"(corrupted|truncated) record at \d+", error.message)
      return f"{path}: {found.group(0) if found else error.message}"
  return None


def compression_type(metadata: dict) -> Optional[str]:
  """The `tf.data.TFRecordDataset` compression type of the shards."""
  return "GZIP" if metadata["options"].get("compression") == "gzip" else None
