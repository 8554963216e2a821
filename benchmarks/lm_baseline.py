r"""The oracle for the language model: an interpolated bigram's eval perplexity on the same data.

Reads the pipeline's own shards (so the vocabulary, `<unk>` and the splits are exactly the
trainer's) and scores the targets the trainer scores: every token but the first of each
sequence, given the one before it (contract.lm_targets). The bigram is
    p(w | v) = lam * c(v, w) / c(v) + (1 - lam) * p_unigram(w),
with add-one unigrams, counted on train; `lam` is the best of a grid on the eval split
itself, so the bigram gets every advantage. Prints one JSON line.

Example:
  python -m benchmarks.lm_baseline --data_dir /tmp/model_lm/data
"""

import argparse
import collections
import json
import math
import sys

import quiet  # pylint: disable=unused-import  (first: before TensorFlow is imported)

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

import contract  # pylint: disable=g-import-not-at-top

LAMBDAS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def sequences(data_dir: str, metadata: contract.Metadata, split: str):
  """Every record's token ids, in shard order."""
  context_spec, sequence_spec = contract.parsing_spec(metadata.task)
  paths = contract.shard_paths(data_dir, metadata.raw, split)
  dataset = tf.data.TFRecordDataset(paths, compression_type=metadata.compression).batch(1024)
  for serialized in dataset:
    _, parsed, _ = tf.io.parse_sequence_example(serialized, context_features=context_spec,
                                                sequence_features=sequence_spec)
    lengths = tf.math.count_nonzero(parsed[contract.TOKENS], axis=1).numpy()
    for row, length in zip(parsed[contract.TOKENS].numpy(), lengths):
      yield row[:length]


def bigram_perplexity(data_dir: str) -> dict:
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
  pairs = [(int(v), int(w)) for ids in sequences(data_dir, metadata, "eval") for v, w in zip(ids[:-1], ids[1:])]
  bigram_p = np.array([bigrams.get(pair, 0) / history[pair[0]] if history[pair[0]] else 0.0 for pair in pairs])
  target_p = unigram_p[np.array([w for _, w in pairs])]
  results = {}
  for lam in LAMBDAS:
    loss = -np.mean(np.log(lam * bigram_p + (1 - lam) * target_p))
    results[lam] = loss
  best = min(results, key=results.get)
  return {"bigram_perplexity": round(math.exp(results[best]), 2), "lambda": best,
          "unigram_perplexity": round(math.exp(-np.mean(np.log(target_p))), 2), "eval_targets": len(pairs)}


def main() -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.lm_baseline", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--data_dir", required=True, help="an lm OUTPUT_DIR of pipeline.preprocess")
  args = parser.parse_args()
  print(json.dumps(bigram_perplexity(args.data_dir)))
  return 0


if __name__ == "__main__":
  sys.exit(main())
