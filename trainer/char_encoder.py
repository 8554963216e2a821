"""The character-aware word encoder: each token's characters → one vector, beside its word embedding.

    chars [batch, time, chars] → char embeddings → CNN over each token's characters, max over them
                                                   (or a BiLSTM, its two final states)
                              → [batch, time, char_features]

The char CNN with max-pooling is Ma & Hovy's (2016), the char BiLSTM Lample et al.'s and
Plank et al.'s (2016); `--char_encoder` chooses (BENCHMARKS.md compares them). Either is
exact under padding, as the word model is: a padded character changes nothing, and a
padded token (no characters) gets a vector of zeros. For the CNN, the embeddings of padded
characters are zeroed before the convolution (so a real character next to padding sees the
zeros a "same" convolution pads the unpadded token with) and padded positions are left out
of the max; the BiLSTM masks them.
"""

import keras
from keras import ops

import contract

KERNEL_WIDTH = 3  # characters each convolution filter sees


@keras.saving.register_keras_serializable(package="trainer")
class CharEncoder(keras.layers.Layer):
  """[batch, time, chars] character ids (PAD_ID-padded) → [batch, time, features].

  Args:
    char_vocab_size: the character vocabulary's size, <pad> and <unk> included.
    embedding_dim: character embedding size.
    features: output size per token (CNN filters; the BiLSTM's two directions together).
    encoder: "cnn" or "lstm".
  """

  def __init__(self, char_vocab_size: int, embedding_dim: int, features: int, encoder: str = "cnn", **kwargs):
    super().__init__(**kwargs)
    self.char_vocab_size, self.embedding_dim, self.features, self.encoder = (
        char_vocab_size, embedding_dim, features, encoder)
    self.embedding = keras.layers.Embedding(char_vocab_size, embedding_dim, name="char_embedding")
    if encoder == "cnn":
      self.network = keras.layers.Conv1D(features, KERNEL_WIDTH, padding="same", activation="tanh", name="char_cnn")
    elif encoder == "lstm":
      self.network = keras.layers.Bidirectional(keras.layers.LSTM(features // 2), name="char_bilstm")
    else:
      raise ValueError(f"char encoder {encoder!r}: not cnn or lstm")

  def build(self, input_shape):
    # Every variable now, not at the first call: the optimizer is built on the model's variables.
    self.embedding.build((None, None))
    self.network.build((None, None, self.embedding_dim))
    self.built = True

  def call(self, chars):
    shape = ops.shape(chars)
    per_token = ops.reshape(chars, (-1, shape[2]))  # [tokens, chars]
    real = ops.not_equal(per_token, contract.PAD_ID)
    embedded = self.embedding(per_token) * ops.cast(real, self.compute_dtype)[:, :, None]
    if self.encoder == "cnn":
      convolved = self.network(embedded)
      masked = ops.where(real[:, :, None], convolved, ops.full_like(convolved, -2.0))  # tanh's range is (-1, 1)
      encoded = ops.where(ops.any(real, axis=1)[:, None], ops.max(masked, axis=1), ops.zeros_like(masked[:, 0]))
    else:
      encoded = self.network(embedded, mask=real)
      encoded = ops.where(ops.any(real, axis=1)[:, None], encoded, ops.zeros_like(encoded))
    return ops.reshape(encoded, (shape[0], shape[1], ops.shape(encoded)[-1]))

  def compute_output_shape(self, input_shape):
    return (*input_shape[:2], self.features if self.encoder == "cnn" else 2 * (self.features // 2))

  def get_config(self):
    return {**super().get_config(), "char_vocab_size": self.char_vocab_size, "embedding_dim": self.embedding_dim,
            "features": self.features, "encoder": self.encoder}
