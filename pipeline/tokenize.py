"""Tokenization in pure TF string ops, so it runs inside the TFT graph and at serving.

A token is a maximal run of characters that are neither separators nor punctuation or
symbols; every punctuation or symbol character is a token of its own. Separators are all
Unicode space separators (Z*) and control characters (Cc: tabs, line ends, NUL, ...), so
no token can contain a newline or tab that would break a vocabulary file.
"""

import tensorflow as tf

_SEPARATORS = r"[\p{Z}\p{Cc}]+"
_PUNCTUATION_OR_SYMBOL = r"([\pP\pS])"


def lowercase(strings, enabled: bool):
  """Unicode-aware lowercasing of a dense or ragged string tensor, when `enabled`."""
  if not enabled:
    return strings
  if isinstance(strings, tf.RaggedTensor):
    return tf.ragged.map_flat_values(tf.strings.lower, strings, encoding="utf-8")
  return tf.strings.lower(strings, encoding="utf-8")


def tokenize(text: tf.Tensor) -> tf.RaggedTensor:
  """[batch] strings → [batch, (tokens)] ragged strings (word / punctuation split)."""
  text = tf.strings.regex_replace(text, _SEPARATORS, " ")
  text = tf.strings.regex_replace(text, _PUNCTUATION_OR_SYMBOL, r" \1 ")
  return tf.strings.split(text)  # every separator is a plain space by now
