"""Word dropout: in training, a token becomes `<unk>` with a probability that falls with its count.

A token seen `count` times in train is replaced by UNK_ID with probability
alpha / (alpha + count) (Kiperwasser & Goldberg 2016): rare words often, frequent ones
almost never, so the model learns what to do with `<unk>`, which with `--min_count 1` it
would otherwise never see in training, and leans on the characters of rare words. The
counts are the pipeline's (OUTPUT_DIR/vocab_counts.txt). Only the word embedding's input
is replaced: the characters (trainer/char_encoder.py) stay as they are.

Only in training (`training=True`): evaluation, export and prediction see every token.
Its random state is a Keras `SeedGenerator`, as Keras Dropout's, so it is checkpointed
with the model's variables and a resumed run draws what an uninterrupted one would.

    >>> replacement_probabilities(alpha=1.0, counts=[0, 7, 1, 3])
    array([0.  , 0.  , 0.5 , 0.25], dtype=float32)
"""

from typing import Optional, Sequence

import keras
import numpy as np
from keras import ops

import contract


def replacement_probabilities(alpha: float, counts: Sequence[int]) -> np.ndarray:
  """Per id, alpha / (alpha + count); 0 for <pad> and <unk>."""
  counts = np.asarray(counts, np.float64)
  probabilities = alpha / (alpha + counts)
  probabilities[:contract.NUM_RESERVED] = 0.0
  return probabilities.astype(np.float32)


class WordDropout(keras.layers.Layer):
  """Token ids [batch, time] → the same with some ids UNK_ID, in training only.

  The probabilities are a constant of the layer, not a weight. Without `counts` (the
  export's model, which never trains) the layer replaces nothing, but is there: a model's
  layers, and so the checkpoints' object graph, depend on the flags alone.
  """

  def __init__(self, alpha: float, counts: Optional[Sequence[int]], seed=None, **kwargs):
    super().__init__(**kwargs)
    self.alpha = alpha
    self.probabilities = None if counts is None else ops.convert_to_tensor(replacement_probabilities(alpha, counts))
    self.seed_generator = keras.random.SeedGenerator(seed)
    self.built = True

  def call(self, tokens, training=None):
    if not training or self.probabilities is None:
      return tokens
    probability = ops.take(self.probabilities, tokens)
    replace = keras.random.uniform(ops.shape(tokens), seed=self.seed_generator) < probability
    return ops.where(replace, ops.full_like(tokens, contract.UNK_ID), tokens)

  def compute_output_shape(self, input_shape):
    return input_shape
