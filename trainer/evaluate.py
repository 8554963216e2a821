r"""Scores MODEL_DIR's export on a split of an OUTPUT_DIR or on a raw labelled file.

Prints one JSON line with the eval metrics of metrics.json (`eval_loss`, `eval_accuracy` or
`eval_perplexity` and `eval_bits_per_char`, `eval_examples`, `eval_tokens`; for a chunk tag
scheme, model.json's `tag_scheme`, also `eval_precision`, `eval_recall`, `eval_f1`). The sums come
from `trainer.metrics.eval_sums` inside the export, as in the training run's evaluation, so
on the eval split this reproduces metrics.json's `best` (the exported step).

Examples:
  python -m trainer.evaluate --model_dir models/pos --data_dir out/pos --split eval
  python -m trainer.evaluate --model_dir models/pos --input test.conll --format conll

A `--data_dir` must hold the vocabulary the model was trained with (its fingerprint is in
MODEL_DIR/model.json). An `--input` file is read with the pipeline's record rules and goes
through the export's own transform (no Beam): bad records are counted and skipped, and so
are empty ones (`filtered`), as in the pipeline.

Imports TensorFlow only (no Beam, no TFT, no Keras).
"""

import argparse
import collections
import itertools
import json
import logging
import sys
from typing import Optional, Sequence

import quiet  # pylint: disable=unused-import  (first: before TensorFlow is imported)

import contract
from trainer import data
from trainer import entities
from trainer import metrics as metrics_lib
from trainer import serving
from trainer.config import TrainerConfig, vocab_fingerprints

BATCH_SIZE = 64  # records per call of the export's raw signature


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m trainer.evaluate", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--model_dir", required=True, help="the --model_dir of trainer.task (holds export/)")
  parser.add_argument("--data_dir", help="an OUTPUT_DIR of pipeline.preprocess with the model's vocabulary")
  parser.add_argument("--split", choices=contract.SPLITS, default="eval",
                      help="split of --data_dir (default eval; test: pipeline.preprocess --test_input's files, "
                      "which training never reads)")
  parser.add_argument("--input", help="a raw labelled file (.gz, .bz2, ... read transparently)")
  parser.add_argument("--format", choices=contract.FORMATS, help="the --input file's format")
  serving.add_raw_file_flags(parser)
  parser.add_argument("--tokens_per_batch", type=int, default=TrainerConfig.tokens_per_batch,
                      help="padded tokens per batch for --data_dir (the metrics do not depend on it)")
  return parser


def counts_chunks(model: serving.Model) -> bool:
  """Whether the model's labels are chunk tags (model.json's `tag_scheme`): entity metrics too."""
  return model.description.get("tag_scheme", "none") in entities.CHUNK_SCHEMES


def evaluate_split(model: serving.Model, data_dir: str, split: str, tokens_per_batch: int) -> dict:
  """The export's eval metrics on a split of an OUTPUT_DIR, batched as trainer.data batches it."""
  metadata = contract.load_metadata(data_dir)
  theirs = model.description.get("fingerprints")
  if metadata.task != model.task:
    raise serving.UsageError(f"--data_dir {data_dir} holds {metadata.task} data; the model is a {model.task} model")
  if theirs is not None and vocab_fingerprints(data_dir, metadata) != theirs:
    raise serving.UsageError(f"--data_dir {data_dir}: its vocab.txt/labels.txt differ from the model's, so its ids "
                             "mean other tokens; evaluate raw files with --input FILE --format F instead")
  if metadata.examples(split) == 0:
    why = ("it was made without --test_input" if split == "test" and split not in metadata.splits
           else "pipeline.preprocess --eval_fraction 0, or too few records")
    raise serving.UsageError(f"--data_dir {data_dir} has no {split} examples ({why}): there is nothing to evaluate")
  paths = contract.shard_paths(data_dir, metadata.raw, split)
  spec = data.bucket_spec(metadata.raw, TrainerConfig.num_buckets, tokens_per_batch, 1, TrainerConfig.pad_multiple)
  score = model.loaded.signatures["score"]
  takes_chars = "char_ids" in score.structured_input_signature[1]
  dataset = data.make_dataset(paths, metadata.task, spec, 1, training=False, compression=metadata.compression,
                              chars=takes_chars)
  totals = dict.fromkeys(metrics_lib.SUM_KEYS, 0.0)
  for batch in dataset:
    inputs = {"token_ids": batch[contract.TOKENS], "length": batch[contract.LENGTH], "weight": batch[data.WEIGHT]}
    if model.task != "lm":
      inputs["label_ids"] = batch[contract.LABELS if model.task == "tag" else contract.LABEL]
    if takes_chars:
      inputs["char_ids"] = batch[contract.CHARS]
    for key, value in score(**inputs).items():
      totals[key] += float(value)
  return metrics_lib.eval_metrics(totals, model.task, metadata.characters(split), counts_chunks(model))


def evaluate_file(model: serving.Model, raw_file: serving.RawFile) -> dict:
  """The export's eval metrics on a raw labelled file, with counts of what was skipped."""
  raw = model.loaded.signatures["raw"]
  totals = dict.fromkeys(metrics_lib.SUM_KEYS, 0.0)
  chars = 0
  filtered, bad = collections.Counter(), collections.Counter()
  path, file_format = raw_file.path, raw_file.file_format
  items = serving.read_items(raw_file, model.task, need_labels=True)
  while chunk := list(itertools.islice(items, BATCH_SIZE)):
    good = [item.record for item in chunk if item.record is not None]
    for item in chunk:
      if item.record is None and item.problem:
        (filtered if item.filtered else bad)[item.problem] += 1
    if not good:
      continue
    chars += sum(serving.characters(record) for record in good)
    outputs = raw(**serving.raw_batch(good, model.task, with_labels=True))
    for key in metrics_lib.SUM_KEYS:
      if key in outputs:  # an export from before the chunk sums has none
        totals[key] += float(outputs[key])
  if not totals["examples"]:
    raise serving.UsageError(f"--input {path}: no good {file_format} records for a {model.task} model "
                             f"({dict(bad) or 'the file is empty'}); is --format right?")
  metrics = metrics_lib.eval_metrics(totals, model.task, chars, counts_chunks(model))
  metrics.update(filtered=dict(filtered), dead_letter=dict(bad))
  if bad:
    logging.warning("Skipped %d bad records: %s", sum(bad.values()), dict(bad))
  return metrics


def run(argv: Optional[Sequence[str]] = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  if bool(args.data_dir) == bool(args.input):
    parser.error("give either --data_dir (with --split) or --input FILE --format F")
  if args.input and not args.format:
    parser.error(f"--input needs --format {'|'.join(contract.FORMATS)}")
  try:
    model = serving.load_model(args.model_dir)
    if args.data_dir:
      metrics = evaluate_split(model, args.data_dir, args.split, args.tokens_per_batch)
    else:
      if args.format == "text" and model.task != "lm":
        raise serving.UsageError(f"--format text has no labels to score a {model.task} model against")
      metrics = evaluate_file(model, serving.raw_file_from_flags(args, model))
  except (serving.UsageError, contract.DataDirError) as error:
    parser.error(str(error))
  print(json.dumps(metrics, sort_keys=True))
  return 0


def main():
  quiet.configure_logging()
  sys.exit(run())


if __name__ == "__main__":
  main()
