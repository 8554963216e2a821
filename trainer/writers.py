"""trainer.predict --input's output: each record's prediction, written in the input's format.

- conll: each row gets one more column, its predicted label (tag; classify: every row of a
  sentence gets the sentence's label); the lines between sentences are written as read.
- conllu: the `--label_column` of each word line is replaced by its predicted label; every
  other byte (comments, multiword-token ranges, empty nodes, line ends, a byte-order mark)
  is written back as read, in the file's encoding.
- jsonl: each object gets `labels` (tag), `label` and `probabilities` (classify) or
  `log_likelihood` and `perplexity` (lm).
- text: one line per input line.
- parquet: each row gets the jsonl keys as columns (a column of that name is replaced),
  and `error` (the reason a row has no prediction, else null).

A record without a prediction (bad, or filtered) keeps its lines unchanged (CoNLL), gets
{"error": reason} (jsonl) or an empty line (text).
"""

import codecs
import json
from typing import List, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from corpus import files
from corpus import records
from corpus.reader import Item


# The prediction columns of a Parquet output, by task.
_PREDICTION_COLUMNS = {
    "tag": [("labels", pa.list_(pa.string()))],
    "classify": [("label", pa.string()), ("probabilities", pa.map_(pa.string(), pa.float64()))],
    "lm": [("log_likelihood", pa.float64()), ("perplexity", pa.float64())],
}
PARQUET_ROWS_PER_WRITE = 1 << 16


class PredictionWriter:
  """Writes Items and their predictions to a binary stream, in the input's format."""

  def __init__(self, out, file_format: str, task: str, *, encoding: str = files.UTF8, use_tabs: bool = True,
               label_index: Optional[int] = None, bom: bool = False, schema: Optional[pa.Schema] = None):
    self.out, self.file_format, self.task = out, file_format, task
    self.use_tabs, self.label_index = use_tabs, label_index
    self._rows, self._parquet = [], None
    if file_format == "parquet":  # the input's columns, then the predictions'
      added = _PREDICTION_COLUMNS[task] + [("error", pa.string())]
      kept = [field for field in schema if field.name not in dict(added)]
      self._schema = pa.schema(kept + [pa.field(name, kind) for name, kind in added])
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
    if self.file_format == "parquet":
      row = {**item.row, **(prediction or {}), "error": None if prediction else (item.problem or "empty")}
      if "probabilities" in row and row["probabilities"] is not None:
        row["probabilities"] = list(row["probabilities"].items())
      self._rows.append(row)
      if len(self._rows) >= PARQUET_ROWS_PER_WRITE:
        self._write_rows()
    elif self.file_format in ("conll", "conllu"):
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

  def _write_rows(self) -> None:
    if self._parquet is None:
      self._parquet = pq.ParquetWriter(self.out, self._schema)
    self._parquet.write_table(pa.Table.from_pylist(self._rows, schema=self._schema))
    self._rows = []

  def flush(self) -> None:
    if self.file_format == "parquet":
      if self._rows or self._parquet is None:
        self._write_rows()
      self._parquet.close()
    elif not self.utf8:
      self.out.write(self._encoder.encode("", final=True))
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
