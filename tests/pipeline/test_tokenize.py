"""The tokenizer's separators: the spelled-out class equals Unicode Z* and Cc exactly."""

import tensorflow as tf

from pipeline import tokenize


def by_property(text):
  """The definition: every Z* or Cc character separates (RE2's own Unicode tables)."""
  text = tf.strings.regex_replace(text, r"[\p{Z}\p{Cc}]+", " ")
  text = tf.strings.regex_replace(text, r"([\pP\pS])", r" \1 ")
  return tf.strings.split(text)


def test_every_code_point_tokenizes_as_the_unicode_properties_say():
  code_points = [c for c in range(0x110000) if not 0xD800 <= c < 0xE000]  # no surrogates in UTF-8
  text = "".join(f"a{chr(c)}b{chr(c)}{chr(c)}c " for c in code_points)
  lines = tf.constant([text[i:i + 60_000].encode("utf-8") for i in range(0, len(text), 60_000)])
  assert tokenize.tokenize(lines).to_list() == by_property(lines).to_list()


def test_mixed_separators_and_punctuation():
  tokens = tokenize.tokenize(tf.constant(["a\u00a0b\tc\x00d\u3000e,f\u2028g  h\x85i"])).to_list()
  assert tokens == [[b"a", b"b", b"c", b"d", b"e", b",", b"f", b"g", b"h", b"i"]]
