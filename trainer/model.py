"""The model: Embedding(mask_zero) [+ a char encoder] → stacked (bi)LSTM/GRU → a dense head.

The mask from the embedding (id 0 is padding) flows through every recurrent layer, so
padded steps never update the state: the final state of a padded sequence equals that of
the unpadded one. Padding is on the right, which is what the cuDNN kernels need; they
are used on GPU as long as `recurrent_dropout` is 0.

With a character vocabulary (the data's `chars`) and `--char_features`, each token's word
embedding is concatenated with its characters' encoding (trainer/char_encoder.py) and the
model takes {"tokens", "chars"}; `model_inputs` picks them from a batch. `--word_dropout`
replaces rare training tokens by `<unk>` (trainer/word_dropout.py). `--tie_embeddings`
(lm): the output layer is the input embedding matrix, transposed (Press & Wolf 2017),
after a projection to `embedding_dim` when the last RNN output has another size.
"""

from typing import Mapping, Optional, Sequence

import keras
from keras import ops

import contract
from trainer import char_encoder
from trainer import crf
from trainer import word_dropout
from trainer.config import TrainerConfig

_NEG_INF = -1e9


@keras.saving.register_keras_serializable(package="trainer")
class NeverPredictPad(keras.layers.Layer):
  """Sets the logit of class 0 (padding) to -1e9: it is never a target or a prediction."""

  def call(self, logits):
    pad = keras.ops.one_hot(0, keras.ops.shape(logits)[-1], dtype=logits.dtype)
    return logits + pad * _NEG_INF

  def compute_mask(self, inputs, mask=None):
    return mask


class WordAndChars(keras.layers.Layer):
  """[word embeddings, char encodings] → their concatenation, masked as the words are.

  (keras.layers.Concatenate would keep a position where any input is unmasked, so the
  unmasked char encodings would unmask every padded token.)
  """

  def call(self, inputs):
    return ops.concatenate(inputs, axis=-1)

  def compute_mask(self, inputs, mask=None):
    return mask[0] if mask else None

  def compute_output_shape(self, input_shape):
    return (*input_shape[0][:-1], input_shape[0][-1] + input_shape[1][-1])


class TiedOutput(keras.layers.Layer):
  """Logits x · Eᵀ + b over the vocabulary, E the input Embedding's matrix (shared, not copied)."""

  def __init__(self, embedding: keras.layers.Embedding, **kwargs):
    super().__init__(**kwargs)
    self.embedding = embedding
    self.supports_masking = True

  def build(self, input_shape):
    self.bias = self.add_weight(shape=(self.embedding.input_dim,), initializer="zeros", name="bias")

  def call(self, inputs):
    return ops.matmul(inputs, ops.transpose(self.embedding.embeddings)) + self.bias

  def compute_output_shape(self, input_shape):
    return (*input_shape[:-1], self.embedding.input_dim)


def _recurrent_layer(config: TrainerConfig, return_sequences: bool, index: int):
  cell = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[config.cell]
  layer = cell(config.hidden, return_sequences=return_sequences,
               recurrent_dropout=config.recurrent_dropout, name=f"{config.cell}_{index}")
  if config.bidirectional:
    layer = keras.layers.Bidirectional(layer, name=f"bi{config.cell}_{index}")
  return layer


def build_model(config: TrainerConfig, task: str, vocab_size: int, num_classes: int,
                char_vocab_size: Optional[int] = None, token_counts: Optional[Sequence[int]] = None) -> keras.Model:
  """[batch, time] int64 ids → logits: [batch, time, classes] (lm, tag) or [batch, classes].

  Args:
    config: hyper-parameters.
    task: lm, tag or classify.
    vocab_size: token vocabulary size, <pad> and <unk> included.
    num_classes: output classes: the vocabulary (lm) or the label vocabulary, with <pad>.
    char_vocab_size: the character vocabulary's size; given (and `config.uses_chars`), the
      model also takes the chars [batch, time, chars] and its inputs are a dict.
    token_counts: train count per token id: with `config.word_dropout`, rare tokens become
      <unk> in training. None: none replaced (the export, which never trains; data without
      counts), though the layer is there, so that checkpoints fit every model of the flags.
  """
  tokens = keras.Input(shape=(None,), dtype="int64", name=contract.TOKENS)
  inputs = tokens
  word_ids = tokens
  if config.word_dropout > 0:
    word_ids = word_dropout.WordDropout(config.word_dropout, token_counts, name="word_dropout")(tokens)
  embedding = keras.layers.Embedding(vocab_size, config.embedding_dim, mask_zero=True, name="embedding")
  x = embedding(word_ids)
  if char_vocab_size and config.uses_chars:
    chars = keras.Input(shape=(None, None), dtype="int64", name=contract.CHARS)
    inputs = {contract.TOKENS: tokens, contract.CHARS: chars}
    encoded = char_encoder.CharEncoder(char_vocab_size, config.char_embedding_dim, config.char_features,
                                       config.char_encoder, name="char_encoder")(chars)
    x = WordAndChars(name="word_and_chars")([x, encoded])
  if config.dropout:
    x = keras.layers.Dropout(config.dropout, name="input_dropout")(x)
  for index in range(config.num_layers):
    last = index == config.num_layers - 1
    x = _recurrent_layer(config, return_sequences=not (last and task == "classify"), index=index)(x)
    if config.dropout:
      x = keras.layers.Dropout(config.dropout, name=f"dropout_{index}")(x)
  if config.tie_embeddings and task == "lm":
    if x.shape[-1] != config.embedding_dim:
      x = keras.layers.Dense(config.embedding_dim, name="tie_projection")(x)
    logits = TiedOutput(embedding, name="tied_head")(x)
  else:
    logits = keras.layers.Dense(num_classes, name="head")(x)
  logits = NeverPredictPad(name="never_predict_pad")(logits)
  if config.crf and task == "tag":  # its transition scores, for the loss and the decoder (trainer/crf.py)
    logits = crf.Transitions(name=crf.LAYER)(logits)
  return keras.Model(inputs, logits, name=f"{task}_{config.cell}")


def takes_chars(model: keras.Model) -> bool:
  """Whether `model` has a char encoder (takes {"tokens", "chars"})."""
  return len(model.inputs) > 1


def model_inputs(model: keras.Model, batch: Mapping, task: str, eos_id: Optional[int] = None):
  """What `model` takes from a batch: its token ids, or {tokens, chars} for a char model; a
  language model's after its end id (contract.lm_inputs), whose chars are none (all <pad>)."""
  tokens = batch[contract.TOKENS]
  lm_start = task == "lm" and eos_id is not None
  if lm_start:
    tokens = contract.lm_inputs(tokens, eos_id)
  if not takes_chars(model):
    return tokens
  chars = batch[contract.CHARS]
  if lm_start:
    chars = ops.concatenate([ops.zeros_like(chars[:, :1]), chars], axis=1)
  return {contract.TOKENS: tokens, contract.CHARS: chars}
