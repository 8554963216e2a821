"""The record rules of the input formats: raw bytes → a good `Record`, `Filtered` or `BadRecord`.

Pure Python (no Beam, no TensorFlow), so the pipeline's reader and the trainer's
`evaluate` and `predict` apply exactly the same rules to a raw file.
"""

import hashlib
import json
import re
from typing import List, NamedTuple, Optional, Sequence, Union

DEFAULT_MAX_RECORD_BYTES = 1 << 20  # longer records are dead letters (the pipeline's --max_record_bytes)

# Characters a token may not contain: whitespace and control characters would break the
# line-per-entry vocabulary files (and are separators to the tokenizer anyway).
_BAD_TOKEN_CHARS = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
# CoNLL-U's FORM may hold a plain space (UD allows words with spaces, "New York" in some
# treebanks); it stays one token. Nothing else of the above.
_BAD_FORM_CHARS = re.compile(r"[^\S ]|[\x00-\x1f\x7f-\x9f]")
# A label may contain a plain space ("very positive"), nothing else of the above.
_BAD_LABEL_CHARS = re.compile(r"[^\S ]|[\x00-\x1f\x7f-\x9f]")
# A JSON escape such as "\\ud800" decodes to a lone surrogate, which no UTF-8 can hold.
_SURROGATES = re.compile("[\ud800-\udfff]")


class Record(NamedTuple):
  """One good record; unused fields are empty."""
  text: str = ""
  tokens: Sequence[str] = ()
  labels: Sequence[str] = ()
  label: str = ""


class BadRecord(Exception):
  """A malformed record: `reason` names it in metadata.json and errors/."""

  def __init__(self, reason: str):
    super().__init__(reason)
    self.reason = reason


class Filtered(Exception):
  """A record that is dropped on purpose (empty, whitespace only) and counted."""

  def __init__(self, reason: str):
    super().__init__(reason)
    self.reason = reason


def content_key(record: Record) -> int:
  """A stable 64-bit hash of a record's content (hashlib blake2b, never the built-in)."""
  digest = hashlib.blake2b(digest_size=8)
  digest.update(record.text.encode("utf-8"))
  for part in (record.tokens, record.labels):
    digest.update(b"\x1e")
    digest.update("\x1f".join(part).encode("utf-8"))
  digest.update(b"\x1e" + record.label.encode("utf-8"))
  return int.from_bytes(digest.digest(), "little")


def decode(raw: bytes) -> str:
  """A record's bytes as text; NUL bytes and bytes that do not decode are bad records."""
  if b"\x00" in raw:
    raise BadRecord("nul_byte")
  try:
    return raw.decode("utf-8")
  except UnicodeDecodeError:
    raise BadRecord("undecodable") from None


def check_tokens(tokens, field: str, spaces: bool = False) -> List[str]:
  """`tokens` if it is a list of good tokens (with `spaces`, a token may hold plain spaces)."""
  if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
    raise BadRecord(f"wrong_type_{field}")
  joined = "".join(tokens)
  if _SURROGATES.search(joined):
    raise BadRecord("undecodable")
  bad = _BAD_FORM_CHARS if spaces else _BAD_TOKEN_CHARS
  if any(t == "" or (spaces and not t.strip()) for t in tokens) or bad.search(joined):
    raise BadRecord("bad_token")
  return tokens


def check_label(label, field: str) -> str:
  if isinstance(label, bool) or not isinstance(label, (str, int)):
    raise BadRecord(f"wrong_type_{field}")
  label = str(label)
  if _SURROGATES.search(label):
    raise BadRecord("undecodable")
  if not label.strip() or _BAD_LABEL_CHARS.search(label):
    raise BadRecord("bad_label")
  return label


def parse_text_line(raw: bytes, task: str) -> Record:
  del task  # text is lm only (checked at the command line)
  text = decode(raw)
  if is_blank(raw):
    raise Filtered("empty")
  return Record(text=text)


class Fields(NamedTuple):
  """The names of a record's fields in a JSON object or a Parquet row (--text_field, ...)."""
  text: str = "text"
  tokens: str = "tokens"
  labels: str = "labels"
  label: str = "label"


DEFAULT_FIELDS = Fields()


def parse_json_line(raw: bytes, task: str, fields: Optional[Fields] = None) -> Record:
  """One JSON object: `text` or `tokens`; `labels` (tag) or `label` (classify)."""
  line = decode(raw)
  if is_blank(raw):
    raise Filtered("empty")
  try:
    obj = json.loads(line)
  except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack
    raise BadRecord("bad_json") from None
  return parse_object(obj, task, fields or DEFAULT_FIELDS)


def parse_object(obj, task: str, fields: Fields = DEFAULT_FIELDS) -> Record:
  """One JSON object or Parquet row (a dict): `text` or `tokens`; `labels` (tag) or `label`
  (classify), under the names `fields` gives. A null value is a missing one."""
  if not isinstance(obj, dict):
    raise BadRecord("not_an_object")
  text, tokens = obj.get(fields.text), obj.get(fields.tokens)
  if task == "tag":
    if tokens is None:
      raise BadRecord("missing_tokens")  # labels are per token: tagging needs given tokens
    if obj.get(fields.labels) is None:
      raise BadRecord("missing_labels")
    tokens = check_tokens(tokens, "tokens")
    labels = obj[fields.labels]
    if not isinstance(labels, list):
      raise BadRecord("wrong_type_labels")
    labels = [check_label(label, "labels") for label in labels]
    if len(labels) != len(tokens):
      raise BadRecord("label_count_mismatch")
    if not tokens:
      raise Filtered("empty")
    return Record(tokens=tokens, labels=labels)
  if tokens is not None:
    tokens = check_tokens(tokens, "tokens")
    record = Record(tokens=tokens)
    empty = not tokens
  elif text is not None:
    if not isinstance(text, str):
      raise BadRecord("wrong_type_text")
    if "\x00" in text:
      raise BadRecord("nul_byte")
    if _SURROGATES.search(text):
      raise BadRecord("undecodable")
    record = Record(text=text)
    empty = not text.strip()
  else:
    raise BadRecord("missing_text")
  if task == "classify":
    if obj.get(fields.label) is None:
      raise BadRecord("missing_label")
    record = record._replace(label=check_label(obj[fields.label], "label"))
  if empty:
    raise Filtered("empty")
  return record


def is_blank(line: bytes) -> bool:
  """Empty, or only whitespace, ASCII or Unicode: what `not text.strip()` finds blank.

  The one definition of a blank line: a blank text or JSON line is filtered as `empty`, a
  blank CoNLL line separates sentences (a no-break space line too).
  """
  stripped = line.strip()
  if not stripped:
    return True
  if 0x20 < stripped[0] < 0x80:  # starts with a visible ASCII character (str.strip() also
    return False                  # strips the separators U+001C-U+001F, so those are decoded)
  try:
    return stripped.decode("utf-8").isspace()
  except UnicodeDecodeError:
    return False


def split_conll_row(line: str, use_tabs: bool) -> List[str]:
  return line.split("\t") if use_tabs else line.split()


# CoNLL-U's ten columns, 1-based as the format numbers them; `--label_column` takes the
# names of those that make labels, or a number.
CONLLU_COLUMNS = {"id": 1, "form": 2, "lemma": 3, "upos": 4, "xpos": 5, "feats": 6, "head": 7, "deprel": 8,
                  "deps": 9, "misc": 10}
LABEL_COLUMN_NAMES = ("upos", "xpos", "deprel", "feats", "misc")
DEFAULT_CONLLU_LABEL_COLUMN = "upos"


def label_column_index(label_column: Optional[Union[str, int]], file_format: str) -> Optional[int]:
  """`--label_column` (a CoNLL-U column name, or a 1-based column number) → the 0-based index
  of the label's column; None: the last column (CoNLL's default).

  >>> label_column_index(None, "conllu"), label_column_index("deprel", "conllu"), label_column_index("3", "conll")
  (3, 7, 2)

  Raises:
    ValueError: not a column of the format.
  """
  if label_column is None or label_column == "":
    return CONLLU_COLUMNS[DEFAULT_CONLLU_LABEL_COLUMN] - 1 if file_format == "conllu" else None
  text = str(label_column).strip().lower()
  if text in LABEL_COLUMN_NAMES and file_format == "conllu":
    return CONLLU_COLUMNS[text] - 1
  if not text.isdigit() or int(text) < 2 or (file_format == "conllu" and int(text) > len(CONLLU_COLUMNS)):
    names = f"{', '.join(LABEL_COLUMN_NAMES)} or " if file_format == "conllu" else ""
    most = len(CONLLU_COLUMNS) if file_format == "conllu" else "N"
    raise ValueError(f"--label_column {label_column}: use {names}a column number from 2 to {most} "
                     "(column 1 holds the token)")
  return int(text) - 1


def parse_conll_block(rows: List[str], use_tabs: bool, task: str, label_index: Optional[int] = None) -> Record:
  """One sentence: rows of `token ... label`; token first column, label last (or `label_index`).

  For tag, every row needs its label; otherwise a row needs its token only. A row of one
  column is malformed either way (a token without a label is not CoNLL).
  """
  tokens, labels = [], []
  for row in rows:
    columns = split_conll_row(row, use_tabs)
    if len(columns) < 2:
      raise BadRecord("conll_one_column")
    if task == "tag" and label_index is not None and len(columns) <= label_index:
      raise BadRecord("conll_missing_column")
    tokens.append(columns[0])
    labels.append(columns[-1 if label_index is None else min(label_index, len(columns) - 1)])
  check_tokens(tokens, "tokens")
  if task == "tag":
    for label in labels:
      check_label(label, "labels")
    return Record(tokens=tokens, labels=labels)
  return Record(tokens=tokens)


def conllu_word(row: str) -> Optional[List[str]]:
  """The ten columns of a CoNLL-U word line; None for a multiword-token range (`3-4`) or an
  empty node (`8.1`), which are not words."""
  columns = row.split("\t")
  if len(columns) != len(CONLLU_COLUMNS):
    raise BadRecord("conllu_columns")
  word_id = columns[0]
  if "-" in word_id or "." in word_id:
    return None
  if not word_id.isdigit():
    raise BadRecord("conllu_id")
  return columns


def parse_conllu_block(rows: List[str], task: str, label_index: int) -> Record:
  """One CoNLL-U sentence (its lines other than comments): FORM is the token and column
  `label_index` (0-based) the label; ranges and empty nodes are skipped. A FORM may hold
  plain spaces (one token)."""
  tokens, labels = [], []
  for row in rows:
    columns = conllu_word(row)
    if columns is not None:
      tokens.append(columns[1])
      labels.append(columns[label_index])
  if not tokens:
    raise BadRecord("conllu_no_words")
  check_tokens(tokens, "tokens", spaces=True)
  if task == "tag":
    for label in labels:
      check_label(label, "labels")
    return Record(tokens=tokens, labels=labels)
  return Record(tokens=tokens)


def is_conll_skip_line(line: bytes) -> bool:
  """-DOCSTART- lines and CoNLL-U comments are not part of any record."""
  return line.startswith(b"-DOCSTART-") or (line.startswith(b"# ") and b"\t" not in line)


def is_conllu_comment(line: bytes) -> bool:
  """A CoNLL-U comment line (`# sent_id = 1`, `# text = ...`): not part of a sentence's words."""
  return line.startswith(b"#")
