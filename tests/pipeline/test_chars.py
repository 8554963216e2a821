"""pipeline/chars.py: the graph's characters per token against `contract.kept_chars`, which
the export uses, and against their definition."""

import random

import tensorflow as tf

import contract
from pipeline import chars
from tests.conftest import truncated_chars


def test_split_chars_keeps_what_the_contract_says_for_any_code_points_and_lengths():
  rng = random.Random(0)
  alphabet = "abcXYZé\u0301東京😀שלום-'.0"
  rows = [[("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))) for _ in range(rng.randint(0, 6))]
          for _ in range(200)]
  for max_token_chars in (1, 2, 3, 16):
    split, truncated = chars.split_chars(tf.ragged.constant(rows, tf.string), max_token_chars)
    got = [[b"".join(token).decode() for token in row] for row in split.to_list()]
    assert got == [[truncated_chars(token, max_token_chars) for token in row] for row in rows]
    assert got == [[contract.kept_chars(token, max_token_chars) for token in row] for row in rows]
    assert truncated.numpy().tolist() == [sum(len(token) > max_token_chars for token in row) for row in rows]
