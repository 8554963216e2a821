"""Characters per token: the `chars` feature list and its vocabulary, in the TFT graph.

With `--chars` (the default for `--task tag`) the preprocessing_fn splits each token into
its Unicode code points, keeps at most `--max_token_chars` of them, and maps them to ids
with a character vocabulary learned on train by the token vocabulary's own analyzer
(pipeline/vocabulary.py: counted per batch in the graph and merged in hash partitions, so
a worker holds at most one partition of the distinct characters, and the global step at
most about 2 x `--max_chars` entries). Ids as for tokens: 0 = `<pad>`, 1 = `<unk>`
(characters unseen in train), then by frequency, ties by the character's bytes. The
saved `transform_fn/` does the same to raw text, so serving computes the feature too.

A truncated token keeps its first `max_token_chars - max_token_chars // 2` and its last
`max_token_chars // 2` characters: the start carries capitals and prefixes, the end the
suffixes that mark most tags (-ing, -ly, -ed, -s).

    >>> chars, truncated = split_chars(tf.ragged.constant([["Walking", "on"]]), max_token_chars=4)
    >>> [[b"".join(token).decode() for token in row] for row in chars.to_list()], truncated.numpy().tolist()
    ([['Wang', 'on']], [1])
"""

from typing import Optional, Tuple

import tensorflow as tf

import contract
from pipeline import vocabulary as vocab_lib

CHAR_VOCAB_NAME = "chars"  # file name under transform_fn/assets/
CHARS_TRUNCATED = "chars_truncated"  # int64 output per record: its tokens whose characters were cut


def split_chars(tokens: tf.RaggedTensor, max_token_chars: int) -> Tuple[tf.RaggedTensor, tf.Tensor]:
  """[batch, (tokens)] strings → their characters [batch, (tokens), (chars)], at most
  `max_token_chars` per token (see the module docstring), and per record the number of its
  tokens that were cut."""
  chars = tf.strings.unicode_split(tokens, "UTF-8")  # [batch, (tokens), (chars)]
  per_token = chars.values  # [all tokens, (chars)]
  lengths = per_token.row_lengths()
  position = tf.ragged.range(lengths).flat_values  # each character's place in its token
  length = tf.repeat(lengths, lengths)  # its token's length
  tail = max_token_chars // 2
  keep = (position < max_token_chars - tail) | (position >= length - tail)
  kept = tf.ragged.boolean_mask(per_token, per_token.with_flat_values(keep))
  cut = tf.RaggedTensor.from_row_splits(tf.cast(lengths > max_token_chars, tf.int64), chars.row_splits,
                                        validate=False)
  return chars.with_values(kept), tf.reduce_sum(cut, axis=1)


def vocabulary(chars: tf.RaggedTensor, max_chars: Optional[int], num_partitions: int):
  """The character vocabulary's asset path, learned from `chars` (train) as tokens are."""
  top_k = max_chars - contract.NUM_RESERVED if max_chars else None
  return vocab_lib.vocabulary(chars, CHAR_VOCAB_NAME, top_k=top_k, num_partitions=num_partitions)


def metadata(size: int, max_token_chars: int) -> dict:
  """metadata.json's `chars` entry beside `vocab` and `labels` (`size` counts <pad> and <unk>)."""
  return {"file": contract.CHARS_FILE, "size": size, "pad_id": contract.PAD_ID, "unk_id": contract.UNK_ID,
          "max_token_chars": max_token_chars}
