"""Padding must not change results: masked steps never touch the state or the head."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

import contract
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


# Character ids of each token of SEQUENCES (any ids >= 2 of a vocabulary of 12).
CHARS = [[[2, 3], [4, 5, 6], [7], [2, 8, 9, 10, 11]], [[3], [3, 4]], [[9, 2, 3, 4]]]


def padded_chars(chars, width, char_width):
  out = np.zeros([len(chars), width, char_width], np.int64)
  for i, tokens in enumerate(chars):
    for t, token in enumerate(tokens):
      out[i, t, :len(token)] = token
  return out


def char_model(task, encoder, **flags):
  config = TrainerConfig(data_dir="", model_dir="", bidirectional=True, num_layers=2, embedding_dim=8, hidden=6,
                         char_embedding_dim=5, char_features=6, char_encoder=encoder, **flags)
  return build_model(config, task, vocab_size=12, num_classes=5, char_vocab_size=12)


@pytest.mark.parametrize("encoder", ["cnn", "lstm"])
@pytest.mark.parametrize("task", ["tag", "classify"])
def test_padded_chars_and_tokens_change_nothing(task, encoder):
  """Each sequence alone, as tight as it gets, against all of them in one batch padded wider on
  both the time and the character axis: the same outputs at every real token (tag) or the
  same final state (classify)."""
  model = char_model(task, encoder)
  variables = [variable.path for variable in model.variables]  # all built with the model: the optimizer's
  batch = model({"tokens": padded(SEQUENCES, 9), "chars": padded_chars(CHARS, 9, 8)}, training=False).numpy()
  for i, (sequence, chars) in enumerate(zip(SEQUENCES, CHARS)):
    tight = {"tokens": np.array([sequence]), "chars": padded_chars([chars], len(sequence), max(map(len, chars)))}
    alone = model(tight, training=False).numpy()[0]
    np.testing.assert_allclose(batch[i, :len(sequence)] if task == "tag" else batch[i], alone, atol=1e-5)
  assert [variable.path for variable in model.variables] == variables
  # Not vacuous: a real character does change the outputs.
  changed = padded_chars(CHARS, 9, 8)
  changed[0, 0, 1] = 11
  other = model({"tokens": padded(SEQUENCES, 9), "chars": changed}, training=False).numpy()
  assert np.abs(other[0] - batch[0]).max() > 1e-4


def test_the_char_cnn_is_each_token_convolved_alone_and_max_pooled():
  """The packed convolution against its definition, in numpy: per token, its characters'
  embeddings, zero-padded by one on each side, convolved (width 3), tanh, max over them."""
  from trainer.char_encoder import CharEncoder  # pylint: disable=g-import-not-at-top
  encoder = CharEncoder(12, 5, 6, "cnn")
  encoded = encoder(padded_chars(CHARS, 6, 7)).numpy()
  table = encoder.embedding.embeddings.numpy()
  kernel, bias = encoder.network.kernel.numpy(), encoder.network.bias.numpy()  # [3, 5, 6], [6]
  for i, tokens in enumerate(CHARS):
    for t, token in enumerate(tokens):
      x = np.pad(table[token], [[1, 1], [0, 0]])
      convolved = np.tanh(np.stack([sum(x[p + k] @ kernel[k] for k in range(3)) + bias for p in range(len(token))]))
      np.testing.assert_allclose(encoded[i, t], convolved.max(axis=0), atol=1e-6)


def test_a_token_without_characters_is_encoded_as_zeros():
  from trainer.char_encoder import CharEncoder  # pylint: disable=g-import-not-at-top
  for encoder in ("cnn", "lstm"):
    encoded = CharEncoder(12, 5, 6, encoder)(padded_chars(CHARS, 6, 7)).numpy()
    assert encoded.shape == (3, 6, 6)
    assert (encoded[0, 4:] == 0).all() and (encoded[1, 2:] == 0).all() and (np.abs(encoded[0, :4]) > 0).any()


def test_word_dropout_replaces_tokens_by_their_counts_in_training_only():
  from trainer.word_dropout import WordDropout  # pylint: disable=g-import-not-at-top
  counts = [0, 50, 1, 3, 10 ** 9]  # <pad>, <unk>, then tokens seen 1, 3 and 10^9 times
  layer = WordDropout(1.0, counts, seed=3)
  tokens = np.tile(np.array([[2, 3, 4, 0, 1]], np.int64), [20_000, 1])
  dropped = layer(tokens, training=True).numpy()
  assert (dropped[tokens < 2] == tokens[tokens < 2]).all()  # <pad> and <unk> stay
  assert set(np.unique(dropped[tokens == 2])) <= {1, 2}
  for token, expected in ((2, 1 / 2), (3, 1 / 4), (4, 1e-9)):
    rate = np.mean(dropped[:, token - 2] == contract.UNK_ID)
    assert abs(rate - expected) < 5 * np.sqrt(expected * (1 - expected) / len(tokens)) + 1e-9, (token, rate)
  assert (layer(tokens, training=True).numpy() != dropped).any()  # a new draw at each call
  np.testing.assert_array_equal(layer(tokens, training=False), tokens)

  # In a model: evaluation and export (training=False) are the model without word dropout.
  config = TrainerConfig(data_dir="", model_dir="", embedding_dim=8, hidden=6, word_dropout=1e6)
  with_dropout = build_model(config, "tag", vocab_size=12, num_classes=5, token_counts=[0] * 2 + [1] * 10)
  without = build_model(config, "tag", vocab_size=12, num_classes=5)
  without.set_weights(with_dropout.get_weights())
  inputs = padded(SEQUENCES, 4)
  np.testing.assert_array_equal(with_dropout(inputs, training=False), without(inputs, training=False))
  as_unk = np.where(inputs > 0, contract.UNK_ID, 0)  # alpha 10^6: every token is <unk> in training
  np.testing.assert_allclose(with_dropout(inputs, training=True), without(as_unk, training=True), atol=1e-6)


@pytest.mark.parametrize("hidden", [8, 6])
def test_tied_embeddings_score_with_the_input_matrix(hidden):
  config = TrainerConfig(data_dir="", model_dir="", embedding_dim=8, hidden=hidden, tie_embeddings=True)
  model = build_model(config, "lm", vocab_size=12, num_classes=12)
  untied = build_model(dataclasses.replace(config, tie_embeddings=False), "lm", vocab_size=12, num_classes=12)
  names = {layer.name for layer in model.layers}
  assert "head" not in names and ("tie_projection" in names) == (hidden != 8)
  assert model.count_params() < untied.count_params()
  inputs = padded(SEQUENCES, 4)
  last = model.get_layer("tie_projection" if hidden != 8 else "lstm_0")
  features = keras.Model(model.input, last.output)(inputs).numpy()
  embeddings = model.get_layer("embedding").embeddings.numpy()
  expected = features @ embeddings.T + model.get_layer("tied_head").bias.numpy()
  logits = model(inputs, training=False).numpy()
  np.testing.assert_allclose(logits[..., 1:], expected[..., 1:], atol=1e-5)  # class 0: never predicted


def test_word_dropout_reads_the_pipelines_counts_and_is_off_without_them(demo_tag_data, caplog):
  from trainer import model_dir  # pylint: disable=g-import-not-at-top
  metadata = contract.load_metadata(demo_tag_data)
  config = TrainerConfig(data_dir=demo_tag_data, model_dir="", word_dropout=0.25)
  counts = model_dir.token_counts(config, metadata)
  assert len(counts) == metadata.vocab_size and counts[contract.PAD_ID] == 0
  assert sum(counts) == metadata.tokens("train")  # <unk> holds the train tokens that are <unk>
  assert counts[2:] == sorted(counts[2:], reverse=True) and min(counts[2:]) >= 1
  assert model_dir.token_counts(dataclasses.replace(config, word_dropout=0.0), metadata) is None
  raw = {**metadata.raw, "vocab": {k: v for k, v in metadata.raw["vocab"].items() if k != "counts_file"}}
  assert model_dir.token_counts(config, contract.Metadata.from_dict(raw)) is None  # e.g. WordPiece pieces
  assert "--word_dropout 0.25 is off" in caplog.text
