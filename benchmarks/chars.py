r"""Training tokens/s with the char encoder against the word-only model, on the same batches.

    python -m benchmarks.chars --data_dir OUTPUT_DIR [--tokens_per_batch 1024] [--steps 60] [--repeats 3]

OUTPUT_DIR must hold `chars` (pipeline.preprocess --task tag, or --chars). One input pipeline
(the trainer's, shuffled with seed 0, 16 buckets, chars parsed) is cached, and every model
trains on exactly those batches with the trainer's own steps (`trainer.loop.Trainer.run_steps`:
loss, clipping, Adam; one replica), the first steps (tracing) untimed. The models: today's
word-only model (`--char_features 0`), the char CNN (the default) and the char BiLSTM, each
at the trainer's default size and at the BiLSTM 2 x 128 the issue's taggers use; and the
char CNN with its char axis padded to --max_token_chars rather than to each batch's longest
token. Timed passes alternate between models and the fastest of `--repeats` counts, as
other processes share the machine.
"""

import os
import sys
import tempfile
import time

import quiet  # pylint: disable=unused-import  (first: before TensorFlow is imported)
import keras
import numpy as np
import tensorflow as tf

import contract
from benchmarks import common
from trainer import config as config_lib, data, loop

NUM_BUCKETS = 16
SIZES = {"default (LSTM 64/128)": {}, "BiLSTM 2 x 128": {"bidirectional": True, "num_layers": 2}}
ENCODERS = {"word only": {"char_features": 0}, "char CNN": {"char_encoder": "cnn"},
            "char BiLSTM": {"char_encoder": "lstm"}}
FIXED_WIDTH = "char CNN, chars padded to --max_token_chars"


def _batches(data_dir: str, metadata: contract.Metadata, tokens_per_batch: int, count: int) -> tf.data.Dataset:
  spec = data.bucket_spec(metadata, NUM_BUCKETS, tokens_per_batch, 1, config_lib.DEFAULT_PAD_MULTIPLE)
  dataset = data.make_dataset(contract.shard_paths(data_dir, metadata.raw, "train"), metadata.task, spec, 1,
                              training=True, compression=metadata.compression, seed=0, chars=True)
  return dataset.take(count).cache()


def _fixed_width(batch: dict, width: int) -> dict:
  chars = batch[contract.CHARS]
  return {**batch, contract.CHARS: tf.pad(chars, [[0, 0], [0, 0], [0, width - tf.shape(chars)[2]]])}


def measure(data_dir: str, tokens_per_batch: int = 1024, steps: int = 60, warmup: int = 3, repeats: int = 3) -> dict:
  """Real tokens/s of each model (see the module docstring) on the same cached batches."""
  metadata = contract.load_metadata(data_dir)
  if not metadata.has_chars:
    raise SystemExit(f"{data_dir} has no chars: preprocess with --task tag or --chars")
  batches = _batches(data_dir, metadata, tokens_per_batch, warmup + steps)
  widths = np.array([int(batch[contract.CHARS].shape[2]) for batch in batches.skip(warmup)])  # fills the cache
  variants = {(size, encoder): {**size_flags, **encoder_flags}
              for size, size_flags in SIZES.items() for encoder, encoder_flags in ENCODERS.items()}
  variants.update({(size, FIXED_WIDTH): size_flags for size, size_flags in SIZES.items()})
  trainers, iterators, results = {}, {}, {}
  with tempfile.TemporaryDirectory() as model_dir:
    for key, flags in variants.items():
      keras.utils.set_random_seed(0)
      config = config_lib.TrainerConfig(data_dir=data_dir, model_dir=os.path.join(model_dir, str(len(trainers))),
                                        tokens_per_batch=tokens_per_batch, **flags)
      trainers[key] = trainer = loop.Trainer(config, tf.distribute.OneDeviceStrategy("/cpu:0"), metadata)
      dataset = batches.map(lambda b: _fixed_width(b, metadata.max_token_chars)) if key[1] == FIXED_WIDTH else batches
      # One iterator per model over the cached batches, repeated: every pass sees the same ones.
      iterators[key] = iter(trainer.strategy.experimental_distribute_dataset(dataset.repeat()))
      float(trainer.run_steps(iterators[key], tf.constant(warmup + steps))["loss_sum"])  # traced here, untimed
      results[key] = {"parameters": trainer.model.count_params(), "best_seconds": None}
    for _ in range(repeats):
      for key, trainer in trainers.items():
        iterator = iterators[key]
        float(trainer.run_steps(iterator, tf.constant(warmup))["loss_sum"])  # the timed batches come next
        start = time.perf_counter()
        sums = {k: float(v) for k, v in trainer.run_steps(iterator, tf.constant(steps)).items()}
        seconds = time.perf_counter() - start
        best = results[key]["best_seconds"]
        if best is None or seconds < best:
          results[key].update(best_seconds=round(seconds, 3), real_tokens=int(sums["tokens"]),
                              real_tokens_per_s=round(sums["tokens"] / seconds))
  out = {"data_dir": data_dir, "tokens_per_batch": tokens_per_batch, "steps": steps, "repeats": repeats,
         "max_token_chars": metadata.max_token_chars, "mean_char_width": round(float(widths.mean()), 2),
         "char_widths": {int(w): int(n) for w, n in zip(*np.unique(widths, return_counts=True))}, "models": {}}
  for (size, encoder), result in results.items():
    word_only = results[(size, "word only")]["real_tokens_per_s"]
    out["models"][f"{size}, {encoder}"] = {**result, "vs_word_only": round(result["real_tokens_per_s"] / word_only, 3)}
  return out


def tables(result: dict) -> str:
  rows = [(name, f"{r['parameters']:,}", f"{r['real_tokens_per_s']:,}", f"{r['vs_word_only']:.2f}x")
          for name, r in result["models"].items()]
  return common.report(
      f"Training with characters, {os.path.basename(result['data_dir'].rstrip('/'))} ({result['tokens_per_batch']} "
      f"slots per step, {result['steps']} steps, best of {result['repeats']}; char axis: mean width "
      f"{result['mean_char_width']} of --max_token_chars {result['max_token_chars']})", rows,
      ["model", "parameters", "real tokens/s", "vs word only"])


def main(argv=None):
  return common.main(__doc__, {None: (
      lambda args: [measure(d, args.tokens_per_batch, args.steps, repeats=args.repeats) for d in args.data_dir],
      lambda results: [tables(result) for result in results], measure.__doc__,
      [(["--data_dir"], {"action": "append", "required": True, "help": "an OUTPUT_DIR with chars"}),
       (["--tokens_per_batch"], {"type": int, "default": 1024}), (["--steps"], {"type": int, "default": 60}),
       (["--repeats"], {"type": int, "default": 3})])}, argv=argv)


if __name__ == "__main__":
  sys.exit(main())
