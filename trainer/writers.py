"""trainer.predict --input's output: each record's prediction, written in the input's format.

- conll: each row gets one more column, its predicted label (tag; classify: every row of a
  sentence gets the sentence's label); the lines between sentences are written as read.
- conllu: the `--label_column` of each word line is replaced by its predicted label; every
  other byte (comments, multiword-token ranges, empty nodes, line ends, a byte-order mark)
  is written back as read, in the file's encoding.
- jsonl: each object gets `labels` (tag), `label` and `probabilities` (classify) or
  `log_likelihood` and `perplexity` (lm).
- text: one line per input line.

A record without a prediction (bad, or filtered) keeps its lines unchanged (CoNLL), gets
{"error": reason} (jsonl) or an empty line (text).
"""

import codecs
import json
from typing import List, Optional

from corpus import files
from corpus import records
from corpus.reader import Item


class PredictionWriter:
  """Writes Items and their predictions to a binary stream, in the input's format."""

  def __init__(self, out, file_format: str, task: str, *, encoding: str = files.UTF8, use_tabs: bool = True,
               label_index: Optional[int] = None, bom: bool = False):
    self.out, self.file_format, self.task = out, file_format, task
    self.use_tabs, self.label_index = use_tabs, label_index
    self.utf8 = files.is_utf8(encoding)
    self._encoder = codecs.getincrementalencoder(encoding)(errors="surrogateescape")
    if bom:
      out.write(files.UTF8_BOM)

  def _as_read(self, data: bytes) -> bytes:
    """A line as `corpus` read it (UTF-8) → its bytes in the file's encoding."""
    if self.utf8:
      return data
    return self._encoder.encode(data.decode(files.UTF8, errors="surrogatepass"))

  def _text(self, text: str) -> bytes:
    return text.encode(files.UTF8) if self.utf8 else self._encoder.encode(text)

  def write(self, item: Item, prediction: Optional[dict]) -> None:
    if self.file_format in ("conll", "conllu"):
      for line in item.skipped:
        self.out.write(self._as_read(line.data + line.end))
      if self.file_format == "conll":
        self._write_conll(item, prediction)
      else:
        self._write_conllu(item, prediction)
    elif self.file_format == "jsonl":
      if prediction is None:
        self.out.write(json.dumps({"error": item.problem}).encode(files.UTF8) + b"\n")
      else:
        obj = json.loads(item.lines[0].data)
        obj.update(prediction)
        self.out.write(json.dumps(obj, ensure_ascii=False).encode(files.UTF8) + b"\n")
    else:
      self.out.write(text_line(self.task, prediction).encode(files.UTF8) + b"\n")

  def _write_conll(self, item: Item, prediction: Optional[dict]) -> None:
    if prediction is None:
      labels = [""] * len(item.lines)
    elif self.task == "tag":
      labels = prediction["labels"]
    else:
      labels = [prediction.get("label", "")] * len(item.lines)
    separator = b"\t" if self.use_tabs else b" "
    for line, label in zip(item.lines, labels):
      data = self._as_read(line.data) + (separator + self._text(label) if label else b"")
      self.out.write(data + self._as_read(line.end))

  def _write_conllu(self, item: Item, prediction: Optional[dict]) -> None:
    labels: List[str] = list(prediction["labels"]) if prediction is not None else []
    for line in item.lines:
      data = self._as_read(line.data)
      if prediction is not None:
        columns = records.conllu_word(line.data.decode(files.UTF8))
        if columns is not None:  # a word: its label column is the prediction
          columns[self.label_index] = labels.pop(0) if labels else columns[self.label_index]
          data = self._text("\t".join(columns))
      self.out.write(data + self._as_read(line.end))

  def flush(self) -> None:
    self.out.write(self._encoder.encode("", final=True) if not self.utf8 else b"")
    self.out.flush()


def text_line(task: str, prediction: Optional[dict]) -> str:
  """A prediction as one line of text ("" for none)."""
  if prediction is None:
    return ""
  if task == "tag":
    return " ".join(prediction["labels"])
  if task == "classify":
    return f"{prediction['label']} {prediction['probabilities'].get(prediction['label'], 0.0):.4f}"
  perplexity = "n/a" if prediction["perplexity"] is None else f"{prediction['perplexity']:.2f}"
  return f"log_likelihood {prediction['log_likelihood']:.4f} perplexity {perplexity}"
