r"""Predictions from the SavedModel that trainer.task exported to MODEL_DIR/export.

Texts (arguments, or one per line on stdin) go through the pipeline's own transform_fn
graph, so give them as you would have given them to the pipeline. One line per text:
  tag       each token with its label, `The/DET cat/NOUN`. The export holds token ids, so
            the tokens come from vocab.txt in --data_dir (words not in it show as <unk>);
            without --data_dir only the labels are printed, `DET NOUN`
  classify  the label and its probability, `positive 0.9731`
  lm        the log-likelihood of the text (sum over predicted tokens) and the
            perplexity exp(-log_likelihood / predicted tokens)

`--input FILE --format F` reads a file with the pipeline's own reader (`corpus`: line ends,
compression, `--encoding`, byte-order mark, the formats' rules) and writes the
predictions in the same format (to --output, or stdout), given tokens kept exactly as
they are (trainer/writers.py): CoNLL rows get one more column, the predicted label (tag;
for classify every row of a sentence gets the sentence's label); CoNLL-U gets its
`--label_column` replaced, every other byte kept; jsonl objects get `labels` (tag) or
`label` and `probabilities` (classify) or `log_likelihood` and `perplexity` (lm); text
gets one line per input line. A bad record (a CoNLL row without a token, an empty line, a
JSON line that does not parse) gets an empty prediction (jsonl: {"error": reason}) in its
place and is counted on stderr. The file is streamed in batches.

`--generate N` (lm): up to N tokens sampled after each text, with `--temperature` and
`--seed`; generation stops where the model ends the text (its end-of-sequence id, `</s>`).

Examples:
  python -m trainer.predict --model_dir models/ner --data_dir out/ner "Alice flew to Oslo ."
  python -m trainer.predict --model_dir models/reviews < reviews.txt   # one text per line
  python -m trainer.predict --model_dir models/pos --input test.conll --format conll --output tagged.conll
  python -m trainer.predict --model_dir models/pos --input en_ewt-ud-test.conllu --format conllu --output tagged.conllu
  python -m trainer.predict --model_dir models/lm --generate 20 --temperature 0.8 "the pipeline"

Imports TensorFlow only (no Beam, no TFT, no Keras).
"""

import argparse
import collections
import itertools
import logging
import math
import sys
from typing import Iterable, Iterator, List, NamedTuple, Optional, Sequence

import quiet  # pylint: disable=unused-import  (first: before TensorFlow is imported)

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

import contract
from corpus import records
from trainer import serving
from trainer import writers
from trainer.serving import UsageError

SIGNATURE = "serving_default"


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m trainer.predict", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("texts", nargs="*", metavar="TEXT",
                      help="raw texts; without any (and without --input), one text per line is read from stdin")
  parser.add_argument("--model_dir", required=True, help="the --model_dir of trainer.task (holds export/)")
  parser.add_argument("--data_dir", default=None,
                      help="the pipeline's OUTPUT_DIR, for vocab.txt: tag output then shows the tokens")
  parser.add_argument("--input", help="a file in the pipeline's --format (.gz read transparently)")
  parser.add_argument("--format", choices=contract.FORMATS, help="the --input file's format")
  parser.add_argument("--output", help="where --input's predictions go (default stdout)")
  serving.add_raw_file_flags(parser)
  parser.add_argument("--batch_size", type=int, default=64, help="records per call of the model (default 64)")
  parser.add_argument("--generate", type=int, default=0, help="lm: at most this many tokens sampled after each text (it stops at the end of the text)")
  parser.add_argument("--temperature", type=float, default=1.0, help="--generate: softmax temperature")
  parser.add_argument("--seed", type=int, default=0, help="--generate: sampling seed")
  return parser


def model_wordpiece_suffix(model: serving.Model) -> Optional[str]:
  """The model's WordPiece continuation prefix ("##"), or None for words (model.json)."""
  return model.description.get("tokenizer", {}).get("suffix_indicator")  # absent in older model dirs: words


class TokenVocab(NamedTuple):
  """vocab.txt, and the prefix of WordPiece continuation pieces in it (None for words)."""
  entries: List[str]
  wordpiece_suffix: Optional[str]


def load_token_vocab(data_dir: str, task: str) -> TokenVocab:
  """vocab.txt of the pipeline's OUTPUT_DIR, checked to be data for the model's task."""
  try:
    metadata = contract.load_metadata(data_dir)
  except contract.DataDirError as error:
    raise UsageError(f"--data_dir {error}") from None
  if metadata.task != task:
    raise UsageError(f"--data_dir {data_dir} holds {metadata.task} data but the model is a {task} "
                     "model; pass the --data_dir it was trained on")
  return TokenVocab(contract.read_vocab(metadata.vocab_path(data_dir)), metadata.wordpiece_suffix)


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


def format_outputs(task: str, outputs: dict, token_vocab: Optional[TokenVocab]) -> List[str]:
  """The serving outputs of one batch → one line per text."""
  if task == "tag":
    all_labels, all_token_ids = outputs["labels"].numpy(), outputs["token_ids"].numpy()
    lines = []
    for labels, token_ids, length in zip(all_labels, all_token_ids, outputs[contract.LENGTH].numpy()):
      labels = [label.decode("utf-8") for label in labels[:length]]
      if token_vocab is None:
        lines.append(" ".join(labels))
        continue
      entries = token_vocab.entries
      tokens = [entries[i] if 0 <= i < len(entries) else f"<id {i}>" for i in token_ids if i != contract.PAD_ID]
      if token_vocab.wordpiece_suffix:  # the labels are per word: join the pieces back into words
        tokens, _ = contract.join_pieces(tokens, tokens, token_vocab.wordpiece_suffix)
      lines.append(" ".join(f"{token}/{label}" for token, label in zip(tokens, labels)))
    return lines
  if task == "classify":
    probabilities = outputs["probabilities"].numpy()
    label_ids = outputs["label_id"].numpy()
    return [f"{label.decode('utf-8')} {probabilities[row, label_ids[row]]:.4f}"
            for row, label in enumerate(outputs["label"].numpy())]
  lines = []
  for log_likelihood, predicted in zip(outputs["log_likelihood"].numpy(), outputs["predicted_tokens"].numpy()):
    # An lm without an end id (an older output) predicts nothing for a text of one token.
    perplexity = f"{math.exp(-log_likelihood / predicted):.2f}" if predicted else "n/a"
    lines.append(f"log_likelihood {log_likelihood:.4f} perplexity {perplexity}")
  return lines


# --- --input FILE --format F -------------------------------------------------------------

class _TextOut:
  """A binary stream onto a text one (stdout replaced by a text buffer, as in tests)."""

  def __init__(self, text):
    self.text = text

  def write(self, data: bytes) -> None:
    self.text.write(data.decode("utf-8", errors="surrogateescape"))

  def flush(self) -> None:
    self.text.flush()


def _word_labels(outputs: dict, row: int, record: records.Record) -> List[str]:
  """One predicted label per given token: the label of the token's first piece ("" past
  --max_length); for text, one per token the model's tokenizer made."""
  labels = [label.decode("utf-8") for label in outputs["labels"].numpy()[row]]
  if not record.tokens:
    return labels[:int(outputs[contract.LENGTH].numpy()[row])]
  starts = outputs["gold_ids"].numpy()[row] != contract.PAD_ID  # placeholder labels mark the first pieces
  words = [label for label, start in zip(labels, starts) if start]
  return (words + [""] * len(record.tokens))[:len(record.tokens)]


def _predictions(task: str, outputs: dict, row: int, record: records.Record) -> dict:
  if task == "tag":
    return {"labels": _word_labels(outputs, row, record)}
  if task == "classify":
    probabilities = outputs["probabilities"].numpy()[row]
    label_names = [name.decode("utf-8") for name in outputs["label_names"].numpy()]
    return {"label": outputs["label"].numpy()[row].decode("utf-8"),
            "probabilities": {name: round(float(p), 6) for name, p in zip(label_names, probabilities)
                              if name not in contract.RESERVED_TOKENS}}
  log_likelihood = float(outputs["log_likelihood"].numpy()[row])
  predicted = int(outputs["predicted_tokens"].numpy()[row])
  return {"log_likelihood": round(log_likelihood, 6),
          "perplexity": round(math.exp(-log_likelihood / predicted), 4) if predicted else None}


def _looks_wrong(chunk: List[serving.Item], file_format: str) -> Optional[str]:
  """Why the first batch of a file says it is not in --format, or None."""
  records_ = [item for item in chunk if item.is_record]
  if not records_:
    return None
  if all(item.record is None and not item.filtered for item in records_):
    reasons = sorted({item.problem for item in records_})
    return f"none of its first {len(records_)} records is good {file_format} ({', '.join(reasons)})"
  if file_format == "parquet":
    return None
  first_lines = [item.lines[0].data for item in records_]
  if file_format != "jsonl" and all(line.lstrip().startswith(b"{") for line in first_lines):
    return "its lines are JSON objects (use --format jsonl)"
  if file_format == "text" and all(b"\t" in line for line in first_lines):
    return "its lines have tab-separated columns (use --format conll or conllu)"
  return None


def predict_file(loaded, task: str, raw_file: serving.RawFile, out, batch_size: int) -> collections.Counter:
  """Streams --input's records through the export's raw signature into `out` (binary), in
  the input's format; returns the problems counted."""
  raw = loaded.signatures["raw"]
  file_format = raw_file.file_format
  writer = writers.PredictionWriter(
      out, file_format, task, encoding=raw_file.encoding,
      use_tabs=file_format != "conll" or serving.has_tabs(raw_file),
      label_index=records.label_column_index(raw_file.label_column, file_format) if file_format == "conllu" else None,
      bom=file_format in ("conll", "conllu") and serving.has_bom(raw_file),
      schema=serving.parquet_schema(raw_file) if file_format == "parquet" else None)
  problems = collections.Counter()
  items = serving.read_items(raw_file, task, need_labels=False, keep_skipped=True)
  show_progress = sys.stderr.isatty()
  done = 0
  first = True
  while chunk := list(itertools.islice(items, batch_size)):
    if first:
      wrong = _looks_wrong(chunk, file_format)
      if wrong:
        raise UsageError(f"--input {raw_file.path} does not look like --format {file_format}: {wrong}")
      first = False
    good = [(index, item.record) for index, item in enumerate(chunk) if item.record is not None]
    predictions = [None] * len(chunk)
    if good:
      outputs = raw(**serving.raw_batch([record for _, record in good], task, with_labels=False))
      for row, (index, record) in enumerate(good):
        predictions[index] = _predictions(task, outputs, row, record)
    for item, prediction in zip(chunk, predictions):
      if item.record is None and item.is_record:
        problems[item.problem or "empty"] += 1
      writer.write(item, prediction)
    done += len(chunk)
    if show_progress:
      print(f"\r{done} records, {sum(problems.values())} without a prediction", end="", file=sys.stderr, flush=True)
  if show_progress:
    print(file=sys.stderr)
  writer.flush()
  return problems


# --- --generate N (lm) --------------------------------------------------------------------

def join_generated(text: str, tokens: Sequence[str], wordpiece_suffix: Optional[str]) -> str:
  """A text and the tokens generated after it, space-separated; a WordPiece continuation piece
  (`##ing`) joins the word before it, the text's last word included.

  >>> join_generated("the walk", ["##ing", "dog", "##s", "."], "##")
  'the walking dogs .'
  """
  line = text
  for token in tokens:
    if wordpiece_suffix and token.startswith(wordpiece_suffix) and len(token) > len(wordpiece_suffix):
      line += token[len(wordpiece_suffix):]
    else:
      line += " " + token
  return line


def generate(loaded, texts: Sequence[str], num_tokens: int, temperature: float, seed: int,
             wordpiece_suffix: Optional[str] = None, eos_id: Optional[int] = None) -> List[str]:
  """Each text followed by up to `num_tokens` tokens sampled from the model (never <pad> or
  <unk>), until it samples the end of the text (`eos_id`, model.json's; not printed),
  WordPiece pieces joined into words (`wordpiece_suffix`, e.g. "##": model.json's tokenizer)."""
  rng = np.random.default_rng(seed)
  raw, next_token = loaded.signatures["raw"], loaded.signatures["next_token"]
  lines = []
  for text in texts:
    outputs = raw(**serving.raw_batch([records.Record(text=text)], "lm", with_labels=False))
    token_ids = outputs["token_ids"].numpy()[0, :int(outputs[contract.LENGTH].numpy()[0])].tolist()
    generated = []
    for _ in range(num_tokens):
      outputs = next_token(token_ids=tf.constant([token_ids or [contract.PAD_ID]], tf.int64),
                           length=tf.constant([len(token_ids)], tf.int64))
      logits = outputs["logits"].numpy()[0].astype(np.float64) / max(temperature, 1e-6)
      logits[:contract.NUM_RESERVED] = -np.inf
      probabilities = np.exp(logits - logits.max())
      probabilities /= probabilities.sum()
      token_ids.append(int(rng.choice(len(probabilities), p=probabilities)))
      if token_ids[-1] == eos_id:
        break
      generated.append(token_ids[-1])
    names = next_token(token_ids=tf.constant([generated or [contract.PAD_ID]], tf.int64),
                       length=tf.constant([1], tf.int64))["tokens"].numpy()[0]
    lines.append(join_generated(text, [name.decode("utf-8") for name in names[:len(generated)]], wordpiece_suffix))
  return lines


def run(argv: Optional[Sequence[str]] = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  if args.batch_size < 1:
    parser.error("--batch_size must be >= 1")
  if bool(args.input) != bool(args.format):
    parser.error("--input and --format go together")
  if args.input and args.texts:
    parser.error("give texts as arguments or --input FILE, not both")
  try:
    model = serving.load_model(args.model_dir)  # keep it, not just a signature: it owns the variables
    loaded, task, suffix = model.loaded, model.task, model_wordpiece_suffix(model)
    token_vocab = load_token_vocab(args.data_dir, task) if args.data_dir and task == "tag" else None
    if args.generate and task != "lm":
      raise UsageError(f"--generate needs a language model; this is a {task} model")
    raw_file = serving.raw_file_from_flags(args, model) if args.input else None
    if args.format == "parquet" and not args.output:
      raise UsageError("--format parquet writes a Parquet file: give --output")
    if args.format == "conllu" and task != "tag":
      raise UsageError(f"--format conllu writes predicted labels into a column: it needs a tag model, not {task}")
  except UsageError as error:
    parser.error(str(error))  # exits 2 with the usage line and one clear line
  if args.data_dir and task != "tag":
    logging.info("--data_dir is used for tag models only; ignored for this %s model", task)

  if args.input:
    out = open(args.output, "wb") if args.output else getattr(sys.stdout, "buffer", None) or _TextOut(sys.stdout)
    try:
      problems = predict_file(loaded, task, raw_file, out, args.batch_size)
    except UsageError as error:
      parser.error(str(error))
    finally:
      if args.output:
        out.close()
    if problems:
      print(f"{sum(problems.values())} records without a prediction: {dict(sorted(problems.items()))}",
            file=sys.stderr)
    return 0

  serve = loaded.signatures[SIGNATURE]
  count = 0
  for batch in batches(read_texts(args.texts), args.batch_size):
    if args.generate:
      lines = generate(loaded, batch, args.generate, args.temperature, args.seed + count, suffix,
                       model.description.get("eos_id"))
    else:
      lines = format_outputs(task, serve(text=tf.constant(batch)), token_vocab)
    for line in lines:
      print(line, flush=True)  # one line per text, as it comes, for pipes
    count += len(batch)
  if not count:
    parser.error("no texts: give them as arguments or one per line on stdin")
  return 0


def main():
  quiet.configure_logging()
  sys.exit(run())


if __name__ == "__main__":
  main()
