r"""Raw text → predictions from the SavedModel that trainer.task exported to MODEL_DIR/export.

The export tokenizes and maps text to ids with the pipeline's own transform_fn graph, so
give it text as you would have given it to the pipeline. One line of output per text:
  tag       each token with its label, `The/DET cat/NOUN`. The export holds token ids, so
            the tokens come from vocab.txt in --data_dir (words not in it show as <unk>);
            without --data_dir only the labels are printed, `DET NOUN`
  classify  the label and its probability, `positive 0.9731`
  lm        the log-likelihood of the text (sum over predicted tokens) and the
            perplexity exp(-log_likelihood / predicted tokens)

Examples:
  python -m trainer.predict --model_dir models/ner --data_dir out/ner "Alice flew to Oslo ."
  python -m trainer.predict --model_dir models/reviews < reviews.txt   # one text per line

Imports TensorFlow only (no Beam, no TFT).
"""

import argparse
import itertools
import logging
import math
import os
import sys
from typing import Iterable, Iterator, List, Optional, Sequence

import quiet  # pylint: disable=unused-import  (first: before TensorFlow is imported)

import tensorflow as tf  # pylint: disable=g-import-not-at-top

import contract

EXPORT_DIR = "export"  # trainer.export.EXPORT_DIR; not imported, as that module pulls in Keras
SIGNATURE = "serving_default"
# Which task an export serves, from the outputs trainer/export.py gives each task.
TASK_BY_OUTPUT = {"label_ids": "tag", "probabilities": "classify", "log_likelihood": "lm"}


class UsageError(Exception):
  """A wrong --model_dir or --data_dir: exit 2 with one line that says what to do."""


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m trainer.predict", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("texts", nargs="*", metavar="TEXT",
                      help="raw texts; without any, one text per line is read from stdin")
  parser.add_argument("--model_dir", required=True, help="the --model_dir of trainer.task (holds export/)")
  parser.add_argument("--data_dir", default=None,
                      help="the pipeline's OUTPUT_DIR, for vocab.txt: tag output then shows the tokens")
  parser.add_argument("--batch_size", type=int, default=64, help="texts per call of the model (default 64)")
  return parser


def load_serving(model_dir: str):
  """MODEL_DIR/export → (the loaded SavedModel, its task).

  Raises:
    UsageError: there is no export there, or it is not one that trainer.task writes.
  """
  if not tf.io.gfile.isdir(model_dir):
    raise UsageError(f"--model_dir {model_dir}: no such directory; pass the --model_dir of trainer.task")
  export_dir = os.path.join(model_dir, EXPORT_DIR)
  if not tf.io.gfile.isdir(export_dir):
    if tf.saved_model.contains_saved_model(model_dir):
      raise UsageError(f"--model_dir {model_dir} is the export itself; pass its parent directory")
    hint = ("it looks like a pipeline OUTPUT_DIR (pass that as --data_dir)"
            if tf.io.gfile.exists(os.path.join(model_dir, contract.METADATA_FILE))
            else "train with python -m trainer.task first")
    raise UsageError(f"no {EXPORT_DIR}/ in {model_dir}: {hint}")
  if not tf.saved_model.contains_saved_model(export_dir):
    raise UsageError(f"{export_dir} holds no SavedModel (an interrupted export?): "
                     "rerun python -m trainer.task with the same --model_dir")
  loaded = contract.load_saved_model(export_dir)
  if SIGNATURE not in loaded.signatures:
    raise UsageError(f"{export_dir} has no {SIGNATURE} signature: it was not written by trainer.task")
  outputs = loaded.signatures[SIGNATURE].structured_outputs
  tasks = {task for output, task in TASK_BY_OUTPUT.items() if output in outputs}
  if len(tasks) != 1:
    raise UsageError(f"{export_dir}: outputs {sorted(outputs)} are not those of a trainer.task export; "
                     "re-export with this version")
  # The caller keeps the loaded object, not just the signature: it owns the variables.
  return loaded, tasks.pop()


def load_token_vocab(data_dir: str, task: str) -> List[str]:
  """vocab.txt of the pipeline's OUTPUT_DIR, checked to be data for the model's task."""
  try:
    metadata = contract.read_metadata(data_dir)
  except contract.DataDirError as error:
    raise UsageError(f"--data_dir {error}") from None
  if metadata["task"] != task:
    raise UsageError(f"--data_dir {data_dir} holds {metadata['task']} data but the model is a {task} "
                     "model; pass the --data_dir it was trained on")
  return contract.read_vocab(os.path.join(data_dir, metadata["vocab"]["file"]))


def read_texts(texts: Sequence[str]) -> Iterator[str]:
  """The texts given, or else the lines of stdin (without their line ends), lazily."""
  if texts:
    yield from texts
    return
  if sys.stdin.isatty():
    logging.info("Reading texts from stdin, one per line; end with Ctrl-D")
  for line in sys.stdin:
    yield line.rstrip("\r\n")


def batches(items: Iterable[str], size: int) -> Iterator[List[str]]:
  """Lists of up to `size` items, without reading past the current batch (stdin may be a stream)."""
  iterator = iter(items)
  while batch := list(itertools.islice(iterator, size)):
    yield batch


def format_outputs(task: str, outputs: dict, token_vocab: Optional[Sequence[str]]) -> List[str]:
  """The serving outputs of one batch → one line per text."""
  if task == "tag":
    all_labels, all_token_ids = outputs["labels"].numpy(), outputs["token_ids"].numpy()
    lines = []
    for labels, token_ids, length in zip(all_labels, all_token_ids, outputs[contract.LENGTH].numpy()):
      labels = [label.decode("utf-8") for label in labels[:length]]
      if token_vocab is None:
        lines.append(" ".join(labels))
        continue
      tokens = [token_vocab[i] if 0 <= i < len(token_vocab) else f"<id {i}>" for i in token_ids[:length]]
      lines.append(" ".join(f"{token}/{label}" for token, label in zip(tokens, labels)))
    return lines
  if task == "classify":
    probabilities = outputs["probabilities"].numpy()
    label_ids = outputs["label_id"].numpy()
    return [f"{label.decode('utf-8')} {probabilities[row, label_ids[row]]:.4f}"
            for row, label in enumerate(outputs["label"].numpy())]
  lines = []
  for log_likelihood, predicted in zip(outputs["log_likelihood"].numpy(), outputs["predicted_tokens"].numpy()):
    # A text of one token predicts nothing (no end-of-sequence id): no perplexity to give.
    perplexity = f"{math.exp(-log_likelihood / predicted):.2f}" if predicted else "n/a"
    lines.append(f"log_likelihood {log_likelihood:.4f} perplexity {perplexity}")
  return lines


def run(argv: Optional[Sequence[str]] = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  if args.batch_size < 1:
    parser.error("--batch_size must be >= 1")
  try:
    loaded, task = load_serving(args.model_dir)
    token_vocab = load_token_vocab(args.data_dir, task) if args.data_dir and task == "tag" else None
  except UsageError as error:
    parser.error(str(error))  # exits 2 with the usage line and one clear line
  if args.data_dir and task != "tag":
    logging.info("--data_dir is used for tag models only; ignored for this %s model", task)

  serving = loaded.signatures[SIGNATURE]
  count = 0
  for batch in batches(read_texts(args.texts), args.batch_size):
    outputs = serving(text=tf.constant(batch))
    for line in format_outputs(task, outputs, token_vocab):
      print(line, flush=True)  # one line per text, as it comes, for pipes
    count += len(batch)
  if not count:
    parser.error("no texts: give them as arguments or one per line on stdin")
  return 0


def main():
  logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
  for noisy in ("tensorflow", "absl"):
    logging.getLogger(noisy).setLevel(logging.WARNING)
  sys.exit(run())


if __name__ == "__main__":
  main()
