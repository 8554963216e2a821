"""The character-aware word encoder: each token's characters → one vector, beside its word embedding.

    chars [batch, time, chars] → char embeddings → CNN over each token's characters, max over them
                                                   (or a BiLSTM, its two final states)
                              → [batch, time, char_features]

The char CNN with max-pooling is Ma & Hovy's (2016), the char BiLSTM Lample et al.'s and
Plank et al.'s (2016); `--char_encoder` chooses (BENCHMARKS.md compares them). Either is
exact under padding, as the word model is: a padded character changes nothing, and a
padded token (no characters) gets a vector of zeros. The BiLSTM masks padded characters.
The CNN never sees them: the batch's real characters are packed into one sequence, each
token's followed by one zero vector (what a "same" convolution of width 3 pads a token
with on either side), convolved once, and max-pooled per token over its own characters:

    chars [[c a t 0 0], [a 0 0 0 0], [0 0 0 0 0]]  →  c a t _ a _  (_: a zero embedding)
    → convolution → max over (c a t) and over (a) → [v1, v2, 0]

so the convolution's work follows the characters, not the padded [tokens, chars] block
(most tokens are much shorter than the longest of a batch).
"""

import keras
import tensorflow as tf
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
    has_chars = ops.any(real, axis=1)
    if self.encoder == "cnn":
      encoded = self._packed_cnn(per_token, real, has_chars)
    else:
      embedded = self.embedding(per_token) * ops.cast(real, self.compute_dtype)[:, :, None]
      encoded = self.network(embedded, mask=real)
    encoded = ops.where(has_chars[:, None], encoded, ops.zeros_like(encoded))
    return ops.reshape(encoded, (shape[0], shape[1], ops.shape(encoded)[-1]))

  def _packed_cnn(self, per_token, real, has_chars):
    """[tokens, chars] ids → [tokens, features]: the convolution over the packed characters
    (module docstring), max-pooled per token; rows of tokens without characters are arbitrary."""
    gap = KERNEL_WIDTH // 2  # zeros after each token: its right context, and the next one's left
    keep = tf.concat([real, tf.tile(has_chars[:, None], [1, gap])], axis=1)  # its characters, then the gap
    packed = tf.boolean_mask(tf.pad(per_token, [[0, 0], [0, gap]]), keep)
    is_char = tf.not_equal(packed, contract.PAD_ID)
    embedded = self.embedding(packed) * tf.cast(is_char, self.compute_dtype)[:, None]
    convolved = tf.boolean_mask(self.network(embedded[None])[0], is_char)
    num_tokens = tf.shape(per_token)[0]
    token = tf.boolean_mask(tf.boolean_mask(tf.tile(tf.range(num_tokens)[:, None], [1, tf.shape(keep)[1]]), keep),
                            is_char)
    return tf.math.unsorted_segment_max(convolved, token, num_tokens)

  def compute_output_shape(self, input_shape):
    return (*input_shape[:2], self.features if self.encoder == "cnn" else 2 * (self.features // 2))

  def get_config(self):
    return {**super().get_config(), "char_vocab_size": self.char_vocab_size, "embedding_dim": self.embedding_dim,
            "features": self.features, "encoder": self.encoder}
