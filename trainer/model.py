"""The model: Embedding(mask_zero) → stacked (bi)LSTM/GRU → a dense head.

The mask from the embedding (id 0 is padding) flows through every recurrent layer, so
padded steps never update the state: the final state of a padded sequence equals that of
the unpadded one. Padding is on the right, which is what the cuDNN kernels need; they
are used on GPU as long as `recurrent_dropout` is 0.
"""

import keras

from trainer import crf
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


def _recurrent_layer(config: TrainerConfig, return_sequences: bool, index: int):
  cell = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[config.cell]
  layer = cell(config.hidden, return_sequences=return_sequences,
               recurrent_dropout=config.recurrent_dropout, name=f"{config.cell}_{index}")
  if config.bidirectional:
    layer = keras.layers.Bidirectional(layer, name=f"bi{config.cell}_{index}")
  return layer


def build_model(config: TrainerConfig, task: str, vocab_size: int, num_classes: int) -> keras.Model:
  """[batch, time] int64 ids → logits: [batch, time, classes] (lm, tag) or [batch, classes].

  Args:
    config: hyper-parameters.
    task: lm, tag or classify.
    vocab_size: token vocabulary size, <pad> and <unk> included.
    num_classes: output classes: the vocabulary (lm) or the label vocabulary, with <pad>.
  """
  tokens = keras.Input(shape=(None,), dtype="int64", name="tokens")
  x = keras.layers.Embedding(vocab_size, config.embedding_dim, mask_zero=True, name="embedding")(tokens)
  if config.dropout:
    x = keras.layers.Dropout(config.dropout, name="input_dropout")(x)
  for index in range(config.num_layers):
    last = index == config.num_layers - 1
    x = _recurrent_layer(config, return_sequences=not (last and task == "classify"), index=index)(x)
    if config.dropout:
      x = keras.layers.Dropout(config.dropout, name=f"dropout_{index}")(x)
  logits = keras.layers.Dense(num_classes, name="head")(x)
  logits = NeverPredictPad(name="never_predict_pad")(logits)
  if config.crf and task == "tag":  # its transition scores, for the loss and the decoder (trainer/crf.py)
    logits = crf.Transitions(name=crf.LAYER)(logits)
  return keras.Model(tokens, logits, name=f"{task}_{config.cell}")
