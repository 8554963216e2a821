"""The record rules of the input formats: raw bytes → a good `Record`, `Filtered` or `BadRecord`.

Pure Python (no Beam, no TensorFlow), so the pipeline's reader and the trainer's
`evaluate` and `predict` apply exactly the same rules to a raw file.
"""

import hashlib
import json
import re
from typing import List, NamedTuple, Sequence

# Characters a token may not contain: whitespace and control characters would break the
# line-per-entry vocabulary files (and are separators to the tokenizer anyway).
_BAD_TOKEN_CHARS = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
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


def check_tokens(tokens, field: str) -> List[str]:
  if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
    raise BadRecord(f"wrong_type_{field}")
  joined = "".join(tokens)
  if _SURROGATES.search(joined):
    raise BadRecord("undecodable")
  if any(t == "" for t in tokens) or _BAD_TOKEN_CHARS.search(joined):
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


def parse_json_line(raw: bytes, task: str) -> Record:
  """One JSON object: `text` or `tokens`; `labels` (tag) or `label` (classify)."""
  line = decode(raw)
  if is_blank(raw):
    raise Filtered("empty")
  try:
    obj = json.loads(line)
  except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack
    raise BadRecord("bad_json") from None
  if not isinstance(obj, dict):
    raise BadRecord("not_an_object")
  text, tokens = obj.get("text"), obj.get("tokens")
  if task == "tag":
    if tokens is None:
      raise BadRecord("missing_tokens")  # labels are per token: tagging needs given tokens
    if "labels" not in obj:
      raise BadRecord("missing_labels")
    tokens = check_tokens(tokens, "tokens")
    labels = obj["labels"]
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
    if "label" not in obj:
      raise BadRecord("missing_label")
    record = record._replace(label=check_label(obj["label"], "label"))
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


def parse_conll_block(rows: List[str], use_tabs: bool, task: str) -> Record:
  """One sentence: rows of `token ... label`; token first column, label last."""
  tokens, labels = [], []
  for row in rows:
    columns = split_conll_row(row, use_tabs)
    if len(columns) < 2:
      raise BadRecord("conll_one_column")
    tokens.append(columns[0])
    labels.append(columns[-1])
  check_tokens(tokens, "tokens")
  if task == "tag":
    for label in labels:
      check_label(label, "labels")
    return Record(tokens=tokens, labels=labels)
  return Record(tokens=tokens)


def is_conll_skip_line(line: bytes) -> bool:
  """-DOCSTART- lines and CoNLL-U comments are not part of any record."""
  return line.startswith(b"-DOCSTART-") or (line.startswith(b"# ") and b"\t" not in line)
