"""Tokenization in pure TF string ops, so it runs inside the TFT graph and at serving.

A token is a maximal run of characters that are neither separators nor punctuation or
symbols; every punctuation or symbol character is a token of its own. Separators are all
Unicode space separators (Z*) and control characters (Cc: tabs, line ends, NUL, ...), so
no token can contain a newline or tab that would break a vocabulary file.
"""

import tensorflow as tf

# The separators `tf.strings.split()` does not already split on: Z* and Cc but the ASCII
# space, \t, \n, \v, \f and \r. Spelled out, RE2 scans text that has none of them
# (nearly all text) much faster than `[\p{Z}\p{Cc}]+`, which also rewrites every space
# (BENCHMARKS.md; tests/pipeline/test_tokenize.py: the same tokens for every code point).
_OTHER_SEPARATORS = (r"[\x{0}-\x{8}\x{e}-\x{1f}\x{7f}-\x{a0}\x{1680}\x{2000}-\x{200a}"
                     r"\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]")
_PUNCTUATION_OR_SYMBOL = r"[\pP\pS]"


def lowercase(strings, enabled: bool):
  """Unicode-aware lowercasing of a dense or ragged string tensor, when `enabled`."""
  if not enabled:
    return strings
  if isinstance(strings, tf.RaggedTensor):
    return tf.ragged.map_flat_values(tf.strings.lower, strings, encoding="utf-8")
  return tf.strings.lower(strings, encoding="utf-8")


def tokenize(text: tf.Tensor) -> tf.RaggedTensor:
  """[batch] strings → [batch, (tokens)] ragged strings (word / punctuation split)."""
  text = tf.strings.regex_replace(text, _OTHER_SEPARATORS, " ")
  text = tf.strings.regex_replace(text, _PUNCTUATION_OR_SYMBOL, r" \0 ")  # \0: no capture group, faster
  return tf.strings.split(text)  # splits on runs of ASCII whitespace


def split_on_whitespace(text: tf.Tensor) -> tf.RaggedTensor:
  """[batch] strings → [batch, (tokens)]: the text's whitespace-separated strings as they are
  (`--tokenizer whitespace`, for pre-tokenized corpora: `<unk>`, `@-@` and `N` stay one
  token). The separators are the word tokenizer's (Unicode spaces and control characters).
  """
  return tf.strings.split(tf.strings.regex_replace(text, _OTHER_SEPARATORS, " "))
