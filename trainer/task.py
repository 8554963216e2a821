r"""Trains an LSTM/GRU on the pipeline's SequenceExamples under tf.distribute; exports it.

Examples:
  # A tagger on 2 CPU replicas (MirroredStrategy over 2 logical CPU devices):
  python -m trainer.task --data_dir out/ner --model_dir models/ner --cpu_replicas 2 \
      --bidirectional --num_layers 2 --dropout 0.2 --train_steps 2000

  # All visible GPUs; rerunning the same command resumes from the last checkpoint:
  python -m trainer.task --data_dir gs://bucket/out/lm --model_dir gs://bucket/models/lm \
      --cell gru --hidden 1024 --tokens_per_batch 65536

  # Several machines: set TF_CONFIG on each (MultiWorkerMirroredStrategy) and run the
  # same command on every worker.

The task, vocabulary and label sizes come from DATA_DIR/metadata.json.
"""

import argparse
import logging
import signal
import sys
import time
from typing import Optional, Sequence

import quiet  # pylint: disable=unused-import  (first: before TensorFlow is imported)

import contract  # pylint: disable=g-import-not-at-top
from trainer.config import DEFAULT_PAD_MULTIPLE, TrainerConfig


def _non_negative_int(text: str) -> int:
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"must be an integer >= 0, not {text!r}") from None
  if value < 0:
    raise argparse.ArgumentTypeError(f"must be >= 0, not {value}")
  return value


def add_data_flags(parser: argparse.ArgumentParser) -> None:
  """Flags shared with trainer.batches."""
  parser.add_argument("--data_dir", required=True, help="OUTPUT_DIR of pipeline.preprocess")
  parser.add_argument("--num_buckets", type=int, default=16, choices=contract.NUM_BUCKETS_CHOICES,
                      help="length buckets, at the pipeline's optimal boundaries (default 16)")
  parser.add_argument("--tokens_per_batch", type=int, default=4096,
                      help="padded tokens per global batch; sets each bucket's batch size (default 4096)")
  parser.add_argument("--pad_multiple", type=_non_negative_int, default=DEFAULT_PAD_MULTIPLE,
                      help="N: pad each batch to its longest sequence rounded up to a multiple of N "
                           f"(default {DEFAULT_PAD_MULTIPLE}); 0: to its bucket's boundary (one shape per "
                           "bucket, more padding)")
  parser.add_argument("--cpu_replicas", type=int, default=1,
                      help="without GPUs: split the CPU into N logical devices, one replica each")


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m trainer.task", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  add_data_flags(parser)
  parser.add_argument("--model_dir", required=True, help="checkpoints/, logs/, export/, metrics.json")
  parser.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
  parser.add_argument("--bidirectional", action="store_true")
  parser.add_argument("--num_layers", type=int, default=1)
  parser.add_argument("--embedding_dim", type=int, default=64)
  parser.add_argument("--hidden", type=int, default=128)
  parser.add_argument("--dropout", type=float, default=0.0, help="dropout on RNN inputs and outputs")
  parser.add_argument("--recurrent_dropout", type=float, default=0.0,
                      help="dropout on the recurrent state (> 0 disables cuDNN kernels on GPU)")
  parser.add_argument("--train_steps", type=int, default=1000)
  parser.add_argument("--eval_every", type=int, default=200)
  parser.add_argument("--log_every", type=int, default=50)
  parser.add_argument("--checkpoint_every", type=int, default=200)
  parser.add_argument("--learning_rate", type=float, default=1e-3)
  parser.add_argument("--clip_norm", type=float, default=1.0, help="global gradient norm clip; 0 = off")
  parser.add_argument("--loss_reduction", choices=("token", "sequence"), default="token",
                      help="token: mean over real tokens; sequence: mean over sequences of their mean")
  parser.add_argument("--seed", type=int, default=42)
  return parser


def run(argv: Optional[Sequence[str]] = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  if args.train_steps < 1 or args.tokens_per_batch < 1 or args.cpu_replicas < 1 or args.num_layers < 1:
    parser.error("--train_steps, --tokens_per_batch, --cpu_replicas and --num_layers must be >= 1")

  try:
    metadata = contract.read_metadata(args.data_dir)
  except contract.DataDirError as error:
    parser.error(str(error))
  config = TrainerConfig(
      data_dir=args.data_dir, model_dir=args.model_dir, cell=args.cell, bidirectional=args.bidirectional,
      num_layers=args.num_layers, embedding_dim=args.embedding_dim, hidden=args.hidden, dropout=args.dropout,
      recurrent_dropout=args.recurrent_dropout, tokens_per_batch=args.tokens_per_batch,
      num_buckets=args.num_buckets, pad_multiple=args.pad_multiple, train_steps=args.train_steps, eval_every=args.eval_every,
      log_every=args.log_every, learning_rate=args.learning_rate, clip_norm=args.clip_norm,
      loss_reduction=args.loss_reduction, checkpoint_every=args.checkpoint_every,
      cpu_replicas=args.cpu_replicas, seed=args.seed)

  # TensorFlow and Keras are imported only now: device setup must precede their first use.
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from trainer import distribution, export, loop  # pylint: disable=g-import-not-at-top

  strategy = distribution.make_strategy(config.cpu_replicas)
  is_chief, worker_name = distribution.worker_role()
  try:
    loop.check_model_dir(config, metadata, write=is_chief)
  except loop.ModelDirError as error:
    parser.error(str(error))
  begin = time.time()
  try:
    checked = loop.check_data(config, metadata, write=is_chief)
  except contract.DataDirError as error:
    parser.error(str(error))
  if checked is not None:
    logging.info("Checked %d records in the shards against metadata.json in %.1f s", checked, time.time() - begin)
  keras.utils.set_random_seed(config.seed)
  logging.info("%s with %d replicas (%s); task %s", type(strategy).__name__, strategy.num_replicas_in_sync,
               worker_name, metadata["task"])
  try:
    trainer = loop.Trainer(config, strategy, metadata, is_chief=is_chief, worker_name=worker_name)
  except contract.DataDirError as error:
    parser.error(str(error))
  try:
    metrics = trainer.train()
  except contract.DataDirError as error:  # data damaged after it was written: one line, exit 2
    print(f"error: {error}", file=sys.stderr)
    return 2
  if trainer.stopped_early:
    print(f"Stopped by SIGTERM at step {metrics['global_step']}; checkpoint saved in "
          f"{trainer.manager.directory}; rerun the same command to resume", file=sys.stderr)
    return 128 + signal.SIGTERM
  tf.io.gfile.makedirs(trainer.output_dir)
  metrics_path = loop.write_metrics(trainer.output_dir, metrics)
  if not is_chief:
    print(f"Worker {worker_name} finished at step {metrics['global_step']}; metrics in {metrics_path}")
    return 0
  export_path = export.export(config, metadata, trainer.model)
  print(f"Trained to step {metrics['global_step']} on {metrics['replicas']} replicas: "
        + ", ".join(f"{k} {metrics[k]:.4g}" for k in ("train_loss", "eval_loss", "eval_accuracy", "eval_perplexity")
                    if k in metrics)
        + f"; model in {export_path}, metrics in {metrics_path}")
  return 0


def main():
  logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
  for noisy in ("tensorflow", "absl"):
    logging.getLogger(noisy).setLevel(logging.WARNING)
  sys.exit(run())


if __name__ == "__main__":
  main()
