"""Padding must not change results: masked steps never touch the state or the head."""

import numpy as np
import pytest
import tensorflow as tf

from trainer.config import TrainerConfig
from trainer.model import build_model

SEQUENCES = [[5, 3, 9, 2], [7, 7], [4]]


def padded(sequences, width):
  return np.array([s + [0] * (width - len(s)) for s in sequences], dtype=np.int64)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_final_state_of_padded_sequence_equals_unpadded(cell, bidirectional):
  config = TrainerConfig(data_dir="", model_dir="", cell=cell, bidirectional=bidirectional, num_layers=2,
                         embedding_dim=8, hidden=6)
  model = build_model(config, "classify", vocab_size=12, num_classes=4)
  for sequence in SEQUENCES:
    alone = model(np.array([sequence]), training=False).numpy()
    with_padding = model(padded([sequence], 11), training=False).numpy()
    np.testing.assert_allclose(with_padding, alone, atol=1e-5)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_outputs_past_the_length_do_not_leak_into_the_head(bidirectional):
  config = TrainerConfig(data_dir="", model_dir="", bidirectional=bidirectional, num_layers=2,
                         embedding_dim=8, hidden=6)
  model = build_model(config, "tag", vocab_size=12, num_classes=5)
  short = model(padded(SEQUENCES, 4), training=False).numpy()
  long = model(padded(SEQUENCES, 9), training=False).numpy()
  for i, sequence in enumerate(SEQUENCES):
    np.testing.assert_allclose(long[i, :len(sequence)], short[i, :len(sequence)], atol=1e-5)


def test_class_zero_is_never_predicted():
  config = TrainerConfig(data_dir="", model_dir="", embedding_dim=4, hidden=4)
  model = build_model(config, "tag", vocab_size=12, num_classes=3)
  head = model.get_layer("head")
  kernel, bias = head.get_weights()
  head.set_weights([kernel, np.array([100.0, 0.0, 0.0], dtype=np.float32)])  # push towards class 0
  logits = model(padded(SEQUENCES, 4), training=False)
  assert not np.any(tf.argmax(logits, axis=-1).numpy() == 0)
