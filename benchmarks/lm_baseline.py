r"""The oracle for the language model: an interpolated bigram's eval perplexity on the same data.

Reads the pipeline's shards (the trainer's vocabulary, `<unk>` and splits) and scores the
trainer's targets (contract.lm_targets) with p(w | v) = lam * c(v, w) / c(v) + (1 - lam) * p(w):
counts and add-one unigrams from train, `lam` the best of a grid on eval itself.

Example:
  python -m benchmarks.lm_baseline --data_dir /tmp/model_lm/data
"""

import collections
import json
import math
import sys

import quiet  # pylint: disable=unused-import  (first: before TensorFlow is imported)

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

import contract  # pylint: disable=g-import-not-at-top
from benchmarks import common  # pylint: disable=g-import-not-at-top

LAMBDAS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def sequences(data_dir: str, metadata: contract.Metadata, split: str):
  """Every record's token ids, in shard order, between end ids where the data has one (then
  the pairs of consecutive ids are the trainer's (input, target) pairs, the end included)."""
  context_spec, sequence_spec = contract.parsing_spec(metadata.task)
  paths = contract.shard_paths(data_dir, metadata.raw, split)
  dataset = tf.data.TFRecordDataset(paths, compression_type=metadata.compression).batch(1024)
  for serialized in dataset:
    _, parsed, _ = tf.io.parse_sequence_example(serialized, context_features=context_spec,
                                                sequence_features=sequence_spec)
    lengths = tf.math.count_nonzero(parsed[contract.TOKENS], axis=1).numpy()
    for row, length in zip(parsed[contract.TOKENS].numpy(), lengths):
      if metadata.eos_id is None:
        yield row[:length]
      else:
        yield np.concatenate([[metadata.eos_id], row[:length], [metadata.eos_id]])


def bigram_perplexity(data_dir: str, split: str = "eval") -> dict:
  """The bigram's perplexity on `split`, its interpolation weight chosen on that split."""
  metadata = contract.load_metadata(data_dir)
  unigrams = np.ones(metadata.vocab_size)  # add-one: every id has some mass
  unigrams[contract.PAD_ID] = 0.0
  bigrams = collections.Counter()
  for ids in sequences(data_dir, metadata, "train"):
    np.add.at(unigrams, ids[1:], 1.0)  # the targets' distribution
    bigrams.update(zip(ids[:-1].tolist(), ids[1:].tolist()))
  unigram_p = unigrams / unigrams.sum()
  history = collections.Counter()
  for (previous, _), count in bigrams.items():
    history[previous] += count
  pairs = [(int(v), int(w)) for ids in sequences(data_dir, metadata, split) for v, w in zip(ids[:-1], ids[1:])]
  bigram_p = np.array([bigrams.get(pair, 0) / history[pair[0]] if history[pair[0]] else 0.0 for pair in pairs])
  target_p = unigram_p[np.array([w for _, w in pairs])]
  results = {lam: -np.mean(np.log(lam * bigram_p + (1 - lam) * target_p)) for lam in LAMBDAS}
  best = min(results, key=results.get)
  return {"bigram_perplexity": round(math.exp(results[best]), 2), "lambda": best,
          "unigram_perplexity": round(math.exp(-np.mean(np.log(target_p))), 2), "eval_targets": len(pairs)}


def main(argv=None) -> int:
  parser = common.parser(__doc__)
  parser.add_argument("--data_dir", required=True, help="an lm OUTPUT_DIR of pipeline.preprocess")
  print(json.dumps(bigram_perplexity(parser.parse_args(argv).data_dir)))
  return 0


if __name__ == "__main__":
  sys.exit(main())
