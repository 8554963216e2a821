"""Analyze and Transform: TFT learns the vocabularies on train and maps both splits to ids.

The `preprocessing_fn` is the serving contract: the saved `transform_fn/` turns raw text
(or given tokens) into the same ids the shards hold. Vocabulary files hold real entries
only; the reserved `<pad>`/`<unk>` ids are added by shifting, so no real token or label
can ever get id 0, even a literal "<pad>" in the corpus.
"""

import os
from typing import Dict

import apache_beam as beam
import pyarrow as pa
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx_bsl.public import tfxio

import contract
from pipeline import arrow
from pipeline import chars as chars_lib
from pipeline import tokenize
from pipeline import vocabulary as vocab_lib
from pipeline import wordpiece
from pipeline import write
from pipeline.config import PipelineConfig

TOKEN_VOCAB_NAME = "tokens"  # file name under transform_fn/assets/
LABEL_VOCAB_NAME = "labels"
TRUNCATED = "truncated"  # int64 output: 1 if the sequence was cut to max_length
CHARACTERS = "characters"  # int64 output: characters of the record's text (given tokens joined by spaces)
WORD_START = "word_start"  # wordpiece: per piece, 1 on the first piece of a word, else 0


def _tensor_representations(task: str) -> Dict[str, schema_pb2.TensorRepresentation]:
  ragged = 'ragged_tensor {{ feature_path {{ step: "{}" }} }}'
  dense = 'dense_tensor {{ column_name: "{}" shape {{}} }}'
  representations = {}
  for name in contract.raw_columns(task):
    spec = (dense if name in ("text", "label") else ragged).format(name)
    representations[name] = text_format.Parse(spec, schema_pb2.TensorRepresentation())
  return representations


def tensor_adapter_config(task: str) -> tfxio.TensorAdapterConfig:
  schema = arrow.arrow_schema(task)
  schema = pa.schema([field for field in schema if field.name != arrow.SPLIT_KEY])
  return tfxio.TensorAdapterConfig(schema, _tensor_representations(task))


def _to_ids(strings, vocabulary, num_reserved: int = contract.NUM_RESERVED):
  """Strings → ids with the reserved ids in front: OOV → UNK_ID, entry i → i + num_reserved."""
  index = tft.apply_vocabulary(strings, vocabulary, default_value=-1)

  def shift(values):
    return tf.where(values < 0, tf.constant(contract.UNK_ID, tf.int64), values + num_reserved)

  if isinstance(index, tf.RaggedTensor):
    return tf.ragged.map_flat_values(shift, index)
  return shift(index)


def characters(text: tf.Tensor, given: tf.RaggedTensor) -> tf.Tensor:
  """Characters of each record's text: the raw text, or the given tokens joined by single spaces."""
  token_chars = tf.reduce_sum(tf.strings.length(given, unit="UTF8_CHAR"), axis=1)
  spaces = tf.maximum(given.row_lengths() - 1, 0)
  return tf.cast(tf.strings.length(text, unit="UTF8_CHAR"), tf.int64) + tf.cast(token_chars, tf.int64) + spaces


def vocab_counts_path(output_dir: str) -> str:
  """Where the analysis writes the token vocabulary's counts (finalize moves them to
  VOCAB_COUNTS_FILE)."""
  return os.path.join(output_dir, write.TEMP_DIR, contract.VOCAB_COUNTS_FILE)


def tokenizer_metadata(config: PipelineConfig) -> dict:
  """metadata.json's `tokenizer`."""
  if config.tokenizer == "wordpiece":
    return wordpiece.tokenizer_metadata(config.max_vocab, config.task)
  return {"type": config.tokenizer}


def make_preprocessing_fn(config: PipelineConfig):
  """The TFT preprocessing_fn for a config: pure TF ops, analyzers declared once."""
  num_reserved = contract.num_reserved(config.task)  # lm: </s> too
  top_k = config.max_vocab - num_reserved if config.max_vocab else None
  split_text = tokenize.split_on_whitespace if config.tokenizer == "whitespace" else tokenize.tokenize

  def preprocessing_fn(inputs):
    # Exactly one of `text` (raw, tokenized here) and `tokens` (given) is non-empty.
    # --lowercase lowercases the words after they are split (the same words as splitting
    # the lowercased text), so that a word's characters keep their case (`chars`).
    cased_words = tf.concat([split_text(inputs["text"]), inputs["tokens"]], axis=1)
    words = tokenize.lowercase(cased_words, config.lowercased)
    outputs = {CHARACTERS: characters(inputs["text"], inputs["tokens"])}
    if config.tokenizer == "wordpiece":
      # Each word gives at least one piece, so cutting words first keeps the first max_length pieces.
      too_many_words = words.row_lengths() > config.max_length
      words = words[:, :config.max_length]
      _, tokenizer = wordpiece.learn_tokenizer(
          words, TOKEN_VOCAB_NAME, wordpiece.num_pieces(config.max_vocab, config.task), config.min_count,
          num_partitions=config.vocab_partitions)
      ids, word_start = wordpiece.tokenize_words(tokenizer, words, num_reserved)
      truncated = tf.cast(too_many_words | (ids.row_lengths() > config.max_length), tf.int64)
      outputs[contract.TOKENS] = ids[:, :config.max_length]
      outputs[WORD_START] = word_start[:, :config.max_length]
      if config.with_chars:
        token_texts = wordpiece.piece_texts(tokenizer, words)[:, :config.max_length]
    else:
      truncated = tf.cast(words.row_lengths() > config.max_length, tf.int64)
      words = words[:, :config.max_length]
      vocabulary = vocab_lib.vocabulary(words, TOKEN_VOCAB_NAME, min_count=config.min_count, top_k=top_k,
                                        num_partitions=config.vocab_partitions,
                                        counts_path=vocab_counts_path(config.output_dir))
      outputs[contract.TOKENS] = _to_ids(words, vocabulary, num_reserved)
      token_texts = cased_words[:, :config.max_length]
    if config.with_chars:
      chars, outputs[chars_lib.CHARS_TRUNCATED] = chars_lib.split_chars(token_texts, config.max_token_chars)
      outputs[contract.CHARS] = _to_ids(chars, chars_lib.vocabulary(chars, config.max_chars, config.vocab_partitions))
    outputs[contract.LENGTH] = outputs[contract.TOKENS].row_lengths()
    outputs[TRUNCATED] = truncated
    if config.task == "tag":
      labels = inputs["labels"][:, :config.max_length]
      label_ids = _to_ids(labels, vocab_lib.vocabulary(labels, LABEL_VOCAB_NAME))
      if config.tokenizer == "wordpiece":  # the word's label on its first piece, PAD_ID on the rest
        label_ids = wordpiece.spread_word_labels(label_ids, word_start)[:, :config.max_length]
      outputs[contract.LABELS] = label_ids
    elif config.task == "classify":
      label = inputs["label"]
      outputs[contract.LABEL] = _to_ids(label, vocab_lib.vocabulary(label, LABEL_VOCAB_NAME))
    return outputs

  return preprocessing_fn


class Analyze(beam.PTransform):
  """Train RecordBatches → TFT's transform_fn (the vocabularies), also written to transform_fn/.

  Must be applied inside a `tft_beam.Context`.
  """

  def __init__(self, config: PipelineConfig):
    super().__init__()
    self.config = config

  def expand(self, train_batches):
    transform_fn = (
        (train_batches, tensor_adapter_config(self.config.task))
        | "AnalyzeDataset" >> tft_beam.AnalyzeDataset(make_preprocessing_fn(self.config)))
    _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(self.config.output_dir)
    return transform_fn


class Transform(beam.PTransform):
  """RecordBatches of one split → RecordBatches of ids, with the transform_fn of `Analyze`.

  Vocabularies are learned on train only, so eval maps unseen entries to UNK_ID.
  """

  def __init__(self, config: PipelineConfig, transform_fn):
    super().__init__()
    self.config = config
    self.transform_fn = transform_fn

  def expand(self, record_batches):
    (batches, _) = (
        ((record_batches, tensor_adapter_config(self.config.task)), self.transform_fn)
        | "TransformDataset" >> tft_beam.TransformDataset(output_record_batches=True))
    return batches | "DropPassthrough" >> beam.Map(lambda pair: pair[0])
