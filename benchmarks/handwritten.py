r"""Baseline (a): the pipeline's job as a plain single-process script, written the way one would by hand.

Regex tokens (the split of pipeline/tokenize.py), the pipeline's content-hash train/eval split,
the vocabulary counted on train (<pad>, <unk>, then most frequent first), one SequenceExample
per line through the protobuf API, round-robin to N train shards and one eval shard.

Example:
  python -m benchmarks.handwritten --input /tmp/rnn_bench/corpora/prose_10mb.txt \
      --output_dir /tmp/rnn_bench/out/handwritten --num_shards 4
"""

import collections
import hashlib
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import regex  # pylint: disable=g-import-not-at-top  (apache-beam[gcp] requires it)
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from benchmarks import common  # pylint: disable=g-import-not-at-top

# A token is a punctuation/symbol character, or a run of anything that is neither that nor a
# separator: exactly the split of pipeline/tokenize.py.
TOKEN = regex.compile(r"[\pP\pS]|[^\pP\pS\p{Z}\p{Cc}]+")

PAD, UNK = "<pad>", "<unk>"
NUM_RESERVED = 2


def is_eval(text: str, threshold: int) -> bool:
  """The pipeline's split: blake2b of the record's content (text, no tokens or labels)."""
  digest = hashlib.blake2b(text.encode("utf-8") + b"\x1e\x1e\x1e", digest_size=8).digest()
  return int.from_bytes(digest, "little") < threshold


def build_example(ids) -> bytes:
  example = tf.train.SequenceExample()
  example.context.feature["length"].int64_list.value.append(len(ids))
  features = example.feature_lists.feature_list["tokens"].feature
  for token_id in ids:
    features.add().int64_list.value.append(token_id)
  return example.SerializeToString(deterministic=True)


def run(inputs, output_dir, num_shards=4, eval_fraction=0.1, max_length=512) -> dict:
  threshold = int(eval_fraction * (1 << 64))
  splits = {"train": [], "eval": []}
  counts = collections.Counter()
  read = filtered = truncated = 0
  for path in inputs:
    with open(path, encoding="utf-8", newline="\n") as f:
      for line in f:
        read += 1
        line = line.rstrip("\n").rstrip("\r")
        tokens = TOKEN.findall(line)
        if not tokens:
          filtered += 1
          continue
        if len(tokens) > max_length:
          tokens = tokens[:max_length]
          truncated += 1
        split = "eval" if is_eval(line, threshold) else "train"
        if split == "train":
          counts.update(tokens)
        splits[split].append(tokens)

  # Most frequent first; ties by the token's bytes, descending (TFT's order).
  vocab = sorted(counts, key=lambda t: (counts[t], t.encode("utf-8")), reverse=True)
  ids = {token: i + NUM_RESERVED for i, token in enumerate(vocab)}
  os.makedirs(output_dir, exist_ok=True)
  with open(os.path.join(output_dir, "vocab.txt"), "w", encoding="utf-8") as f:
    f.write("".join(t + "\n" for t in [PAD, UNK] + vocab))

  tokens_written = {}
  for split, sequences in splits.items():
    shards = num_shards if split == "train" else 1
    writers = [tf.io.TFRecordWriter(os.path.join(output_dir, f"{split}-{i:05d}-of-{shards:05d}.tfrecord"))
               for i in range(shards)]
    total = 0
    for index, tokens in enumerate(sequences):
      token_ids = [ids.get(t, 1) for t in tokens]
      writers[index % shards].write(build_example(token_ids))
      total += len(token_ids)
    for writer in writers:
      writer.close()
    tokens_written[split] = total
  return {"read": read, "filtered": filtered, "truncated": truncated, "vocab_size": len(vocab) + NUM_RESERVED,
          "examples": {s: len(v) for s, v in splits.items()}, "tokens": tokens_written}


def parser(doc: str):
  """The flags both baselines share with the pipeline's."""
  flags = common.parser(doc)
  flags.add_argument("--input", action="append", required=True)
  flags.add_argument("--output_dir", required=True)
  flags.add_argument("--num_shards", type=int, default=4)
  flags.add_argument("--eval_fraction", type=float, default=0.1)
  flags.add_argument("--max_length", type=int, default=512)
  return flags


def main(argv=None):
  args = parser(__doc__).parse_args(argv)
  print(json.dumps(run(args.input, args.output_dir, args.num_shards, args.eval_fraction, args.max_length)))


if __name__ == "__main__":
  sys.exit(main())
