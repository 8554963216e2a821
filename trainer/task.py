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
import dataclasses
import logging
import signal
import sys
import time
from typing import Optional, Sequence

import quiet  # pylint: disable=unused-import  (first: before TensorFlow is imported)

import contract  # pylint: disable=g-import-not-at-top
from trainer import config as config_lib
from trainer.config import TrainerConfig


def _non_negative_int(text: str) -> int:
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"must be an integer >= 0, not {text!r}") from None
  if value < 0:
    raise argparse.ArgumentTypeError(f"must be >= 0, not {value}")
  return value


# Flags whose values may be 0 but not negative (0 means "off" or "to the boundary").
_NON_NEGATIVE = {"pad_multiple", "warmup_steps", "early_stopping", "char_embedding_dim", "char_features"}


def _add_flags(parser: argparse.ArgumentParser, fields) -> None:
  """One flag per TrainerConfig field, with the field's default, type, help and choices."""
  for field in fields:
    name = f"--{field.name}"
    help_text = field.metadata.get("help", "")
    per_task = "".join(f"; {task}: {defaults[field.name]}" for task, defaults in config_lib.TASK_DEFAULTS.items()
                       if field.name in defaults)
    if field.default is dataclasses.MISSING:
      parser.add_argument(name, required=True, help=help_text)
    elif field.type in (bool, "bool"):
      parser.add_argument(name, action=argparse.BooleanOptionalAction, default=field.default,
                          help=f"{help_text} (default {field.default}{per_task})")
    else:
      kind = type(field.default)
      parser.add_argument(name, type=_non_negative_int if field.name in _NON_NEGATIVE else kind,
                          default=field.default, choices=field.metadata.get("choices"),
                          help=f"{help_text} (default {field.default}{per_task})")


def add_data_flags(parser: argparse.ArgumentParser) -> None:
  """Flags shared with trainer.batches."""
  _add_flags(parser, TrainerConfig.flag_fields(data=True))


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m trainer.task", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  add_data_flags(parser)
  _add_flags(parser, TrainerConfig.flag_fields(data=False))
  return parser


def _given_flags(argv: Optional[Sequence[str]]) -> set:
  """The dests of the flags on the command line (given, whether or not equal to the default)."""
  parser = build_parser()
  for action in parser._actions:  # pylint: disable=protected-access
    action.default = argparse.SUPPRESS
    action.required = False
  given, _ = parser.parse_known_args(argv)
  return set(vars(given))


def run(argv: Optional[Sequence[str]] = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  if args.train_steps < 1 or args.tokens_per_batch < 1 or args.cpu_replicas < 1 or args.num_layers < 1:
    parser.error("--train_steps, --tokens_per_batch, --cpu_replicas and --num_layers must be >= 1")
  if args.word_dropout < 0:
    parser.error("--word_dropout must be >= 0")

  try:
    metadata = contract.load_metadata(args.data_dir)
  except contract.DataDirError as error:
    parser.error(str(error))
  config = TrainerConfig(**{field.name: getattr(args, field.name) for field in dataclasses.fields(TrainerConfig)})
  config = config.with_task_defaults(metadata.task, _given_flags(argv))
  if metadata.task != "tag" and (config.crf or config.tag_scheme not in ("auto", "none")):
    parser.error(f"--crf and --tag_scheme are for tag data; {args.data_dir} holds {metadata.task} data")
  if config.early_stopping and metadata.examples("eval") == 0:
    parser.error(f"--early_stopping needs eval examples, and {args.data_dir} has none; rerun pipeline.preprocess "
                 "with a larger --eval_fraction (or more records)")

  # TensorFlow and Keras are imported only now: device setup must precede their first use.
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from trainer import distribution, entities, export, loop, model_dir  # pylint: disable=g-import-not-at-top

  strategy = distribution.make_strategy(config.cpu_replicas)
  is_chief, worker_name = distribution.worker_role()
  try:
    scheme = model_dir.check_model_dir(config, metadata, write=is_chief)
  except (model_dir.ModelDirError, entities.SchemeError, contract.DataDirError) as error:
    parser.error(str(error))
  config = dataclasses.replace(config, tag_scheme=scheme)  # as model.json records it
  begin = time.time()
  try:
    checked = model_dir.check_data(config, metadata, write=is_chief)
  except contract.DataDirError as error:
    parser.error(str(error))
  if checked is not None:
    logging.info("Checked %d records in the shards against metadata.json in %.1f s", checked, time.time() - begin)
  # A run starts from a clean Keras state, also when a program runs the trainer twice: no
  # layer names or random-seed generators left from an earlier model, so that the objects
  # of a checkpoint are the objects of the model that resumes from it.
  keras.backend.clear_session()
  keras.utils.set_random_seed(config.seed)
  logging.info("%s with %d replicas (%s); task %s", type(strategy).__name__, strategy.num_replicas_in_sync,
               worker_name, metadata.task)
  try:
    trainer = loop.Trainer(config, strategy, metadata, is_chief=is_chief, worker_name=worker_name,
                           new_data=checked is not None)
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
  metrics_path = model_dir.write_metrics(trainer.output_dir, metrics)
  if not is_chief:
    print(f"Worker {worker_name} finished at step {metrics['global_step']}; metrics in {metrics_path}")
    return 0
  exported_step = trainer.restore_exported()
  export_path = export.export(config, metadata, trainer.model)
  stopped = " (early stopping)" if trainer.early_stopped else ""
  print(f"Trained to step {metrics['global_step']}{stopped} on {metrics['replicas']} replicas: "
        + ", ".join(f"{k} {metrics[k]:.4g}" for k in ("train_loss", "eval_loss", "eval_accuracy", "eval_f1",
                                                       "eval_perplexity") if k in metrics)
        + f"; exported step {exported_step} ({config.export if trainer.evaluates else 'last: no eval examples'}) "
        f"to {export_path}, metrics in {metrics_path}")
  return 0


def main():
  quiet.configure_logging()
  sys.exit(run())


if __name__ == "__main__":
  main()
