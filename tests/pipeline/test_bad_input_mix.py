"""Every bad-input kind in one mixed corpus per format, through the real CLI.

Each format gets one corpus of several files in one directory, read with `--input DIR`:
a file mixing good records with every bad kind that applies to the format, a zero-byte
file, a file with no final newline, a file with mixed line ends (LF, CRLF, lone CR),
invalid UTF-8, NUL bytes, records over --max_record_bytes, and files that start with a
UTF-8 byte-order mark (plain and gzipped), which is no part of their first record. A
hidden file and a subdirectory in the directory are not read. The corpus is built record
by record; each record's byte offset and fate (good, filtered with a reason, dead letter
with a reason) is noted as it is written, and every expected count below is computed
from those notes. The job must succeed with
`read == written + filtered + dead_letter`, the right count per reason, one errors/ row
per dead letter (at the right file and offset), and the good records intact.

How the reader splits lines, as asserted here:
  * text and jsonl: a record ends at '\\n', '\\r\\n' or a lone '\\r', mixed freely in one
    file; '\\r\\r\\n' is a record followed by an empty one. A raw CR inside a JSON object
    (legal JSON whitespace) therefore splits it into two records, two `bad_json`.
  * conll: a record is a block of rows; lines that are empty or hold only whitespace
    (ASCII or Unicode, such as a no-break space) separate blocks and are not records, so
    conll has no `filtered` records. `-DOCSTART-` lines and `# ` comments are not records either.

The last tests, on the reader alone, pin four bugs found while writing this file (since
fixed): a line of max_record_bytes + 1 bytes ended by LF was kept; lone-CR records were
length-checked as one line, so short ones were merged into one dead letter; a JSON escape
of a lone surrogate crashed the job; so did JSON nested deeper than Python's stack.

Other encodings, usage errors and input that changes under the job: test_input_files.py.
"""

import codecs
import collections
import gzip
import json
import os
from typing import NamedTuple, Optional, Tuple

import pytest

import contract
from tests.conftest import preprocess, read_metadata, read_records

MAX_RECORD_BYTES = 128  # --max_record_bytes of every run here


class Good(NamedTuple):
  tokens: Tuple[str, ...]
  labels: Optional[Tuple[str, ...]] = None


class Filtered(NamedTuple):
  reason: str


class Dead(NamedTuple):
  reason: str


EMPTY = Filtered("empty")
LINE_ENDS = (b"\n", b"\r\n", b"\r", b"")  # b"": the end of the file, no final newline


class CorpusFile:
  """One input file, built record by record; remembers each record's offset and fate."""

  def __init__(self, directory, name, bom=False):
    self.path = os.path.join(str(directory), name)
    self.data = bytearray(codecs.BOM_UTF8 if bom else b"")  # offsets count it: they are file offsets
    self.records = []  # (offset, raw record bytes as the reader sees them, fate)
    self.ended = False

  def _append(self, content: bytes, end: bytes):
    assert end in LINE_ENDS and not self.ended, "nothing may follow a line without its end"
    assert b"\n" not in content and b"\r" not in content, content
    # A lone CR followed by an LF would be one CRLF line end, not two line ends.
    assert not (self.data.endswith(b"\r") and not content and end.startswith(b"\n"))
    self.data += content + end
    self.ended = end == b""

  def line(self, content: bytes, end: bytes = b"\n"):
    """A line that is not a record (a CoNLL separator, -DOCSTART- or comment)."""
    self._append(content, end)

  def record(self, raw: bytes, fate, end: bytes = b"\n"):
    assert raw or end, "an empty last line without a line end is no line at all"
    self.records.append((len(self.data), raw, fate))
    self._append(raw, end)

  def block(self, rows, fate, ends=None):
    """A CoNLL block: rows of bytes, then (separately) a separator line or the end of file."""
    assert rows and all(row.strip() for row in rows)
    offset = len(self.data)
    for row, end in zip(rows, ends or [b"\n"] * len(rows)):
      self._append(row, end)
    self.records.append((offset, b"\n".join(rows), fate))

  def write(self):
    """Writes the file (gzipped if its name ends in .gz: offsets are in the uncompressed data)."""
    data = bytes(self.data)
    with open(self.path, "wb") as f:
      f.write(gzip.compress(data, mtime=0) if self.path.endswith(".gz") else data)
    return self.path


def text_good(line: str):
  """A good text line whose tokens are its whitespace-separated words (letters only)."""
  assert all(char.isalnum() or char in " \t" for char in line), line
  return line.encode("utf-8"), Good(tuple(line.split()))


def tagged(tokens, labels, **extra):
  """A JSON-lines tag record and its fate: good, with labels as strings."""
  raw = json.dumps({**extra, "tokens": tokens, "labels": labels}, ensure_ascii=False).encode("utf-8")
  return raw, Good(tuple(tokens), tuple(str(label) for label in labels))


def conll_good(*rows):
  """A CoNLL block of tab-separated rows: token first, label last."""
  return [("\t".join(row)).encode("utf-8") for row in rows], Good(
      tuple(row[0] for row in rows), tuple(row[-1] for row in rows))


# --- the corpora -----------------------------------------------------------------------


def text_corpus(directory):
  mixed = CorpusFile(directory, "mixed.txt")
  for line in ["the cat sleeps", "a dog runs"]:
    mixed.record(*text_good(line))
  mixed.record(b"", EMPTY)
  mixed.record(b"   ", EMPTY)  # whitespace only
  mixed.record(b"\t \x0b\x0c ", EMPTY)  # ASCII whitespace only: tab, VT, FF
  mixed.record("\u3000\u00a0\u2003".encode("utf-8"), EMPTY)  # Unicode whitespace only
  mixed.record(*text_good("naïve café 東京"))
  mixed.record(b"caf\xe9 au lait", Dead("undecodable"))  # Latin-1
  mixed.record(b"\xe6\x9d\xb1\xe4", Dead("undecodable"))  # a multi-byte character cut short
  mixed.record(b"\xc0\xaf slash", Dead("undecodable"))  # overlong encoding of '/'
  mixed.record(b"\xed\xa0\x80 surrogate", Dead("undecodable"))  # UTF-8 of a surrogate
  mixed.record(b"\x80 stray continuation byte", Dead("undecodable"))
  mixed.record(b"\xff\xfe", Dead("undecodable"))
  mixed.record(b"nul \x00 inside", Dead("nul_byte"))
  mixed.record(b"\x00", Dead("nul_byte"))
  mixed.record(b"\x00\xe9", Dead("nul_byte"))  # NUL is checked before UTF-8
  mixed.record(*text_good("tabs\tinside  the   line"))
  mixed.record(b"x" * 300, Dead("record_too_long"))
  mixed.record(b"m" * MAX_RECORD_BYTES, Good(("m" * MAX_RECORD_BYTES,)))  # exactly the limit
  mixed.record(b"y" * (MAX_RECORD_BYTES + 1), Dead("record_too_long"))  # one byte over, LF-ended
  mixed.record(b"\x01\x07\x1b", EMPTY)  # control characters only: no token, filtered when encoded
  mixed.record(b"hello, world!", Good(("hello", ",", "world", "!")))
  mixed.record(b'{"tokens": ["not", "json"]}', Good(  # JSON is only text here
      ("{", '"', "tokens", '"', ":", "[", '"', "not", '"', ",", '"', "json", '"', "]", "}")))
  mixed.record(*text_good("end of the mixed file"))

  zero = CorpusFile(directory, "zero_bytes.txt")

  no_newline = CorpusFile(directory, "no_final_newline.txt")
  no_newline.record(*text_good("first line"))
  no_newline.record(*text_good("the last line has no newline"), end=b"")

  # Lone-CR runs stay short: see test_lone_cr_records_are_not_merged_when_long.
  ends = CorpusFile(directory, "line_ends.txt")
  ends.record(*text_good("crlf line"), end=b"\r\n")
  ends.record(*text_good("lf line"), end=b"\n")
  ends.record(*text_good("lone cr one"), end=b"\r")
  ends.record(*text_good("lone cr two"), end=b"\r")
  ends.record(b"", EMPTY, end=b"\r\n")  # '\r\r\n': a record, then an empty one
  ends.record(b"", EMPTY, end=b"\r")  # an empty record ended by a lone CR
  ends.record(*text_good("after the blank lines"), end=b"\n")
  ends.record(*text_good("   spaced crlf  "), end=b"\r\n")
  ends.record(b" \t ", EMPTY, end=b"\r\n")
  ends.record(b"caf\xe9", Dead("undecodable"), end=b"\r")
  ends.record(b"a\x00", Dead("nul_byte"), end=b"\r\n")
  ends.record(b"n" * MAX_RECORD_BYTES, Good(("n" * MAX_RECORD_BYTES,)), end=b"\r\n")
  ends.record(b"z" * (MAX_RECORD_BYTES + 1), Dead("record_too_long"), end=b"\r\n")
  ends.record(*text_good("last line lf"), end=b"\n")

  # A UTF-16 file: every line holds NUL bytes (the LF of a line is followed by a NUL byte).
  utf16 = CorpusFile(directory, "utf16.txt")
  encoded = "\ufeffhi there\nsecond line\n".encode("utf-16-le")
  parts = encoded.split(b"\n")
  for part in parts[:-1]:
    utf16.record(part, Dead("nul_byte"))
  utf16.record(parts[-1], Dead("nul_byte"), end=b"")  # the last part is b"\x00"
  assert bytes(utf16.data) == encoded and parts[-1] == b"\x00"

  latin1 = CorpusFile(directory, "latin1.txt")
  latin1.record("naïve café".encode("latin-1"), Dead("undecodable"))
  latin1.record(*text_good("plain ascii line"))
  latin1.record("Über straße".encode("latin-1"), Dead("undecodable"))
  latin1.record(b"cut \xe6\x9d", Dead("undecodable"), end=b"")  # cut short at the end of file

  long_tail = CorpusFile(directory, "long_tail.txt")
  long_tail.record(*text_good("short line"))
  long_tail.record(b"q" * 500, Dead("record_too_long"), end=b"")  # at the end of file

  bom = CorpusFile(directory, "bom.txt", bom=True)
  bom.record(*text_good("Windows editors start a file with a mark"))
  bom.record(*text_good("second line"), end=b"\r\n")
  bom_gz = CorpusFile(directory, "bom.txt.gz", bom=True)
  bom_gz.record(b"", EMPTY)  # the mark, then a line end: an empty first record
  bom_gz.record(*text_good("gzipped after a blank line"))
  return [mixed, zero, no_newline, ends, utf16, latin1, long_tail, bom, bom_gz]


def jsonl_tag_corpus(directory):
  mixed = CorpusFile(directory, "mixed.jsonl")
  mixed.record(*tagged(["The", "cat", "sleeps", "."], ["DET", "NOUN", "VERB", "PUNCT"]))
  mixed.record(b"", EMPTY)
  mixed.record(b" \t ", EMPTY)  # whitespace only
  mixed.record(b'{"tokens": [], "labels": []}', EMPTY)  # no tokens
  mixed.record(*tagged(["A", "dog", "runs"], ["DET", "NOUN", "VERB"]))
  for bad_json in [b"{not json", b'{"tokens": ["a"], "labels": ["X"]', b'{"tokens": ["a"], "labels": ["X"]} trailing',
                   b"{'tokens': ['a'], 'labels': ['X']}", b'{"tokens": ["a"], "labels": ["X"],}',
                   b'\xef\xbb\xbf{"tokens": ["a"], "labels": ["X"]}']:  # the last has a UTF-8 BOM
    mixed.record(bad_json, Dead("bad_json"))
  for not_an_object in [b"[1, 2]", b'"a string"', b"42", b"null", b"true", b"NaN"]:
    mixed.record(not_an_object, Dead("not_an_object"))
  mixed.record(b'{"text": "no tokens given", "labels": ["X"]}', Dead("missing_tokens"))
  mixed.record(b'{"labels": ["X"]}', Dead("missing_tokens"))
  mixed.record(b'{"tokens": ["a"]}', Dead("missing_labels"))
  mixed.record(b'{"tokens": "a b", "labels": ["X"]}', Dead("wrong_type_tokens"))
  mixed.record(b'{"tokens": ["a", 1], "labels": ["X", "Y"]}', Dead("wrong_type_tokens"))
  mixed.record(b'{"tokens": null, "labels": ["X"]}', Dead("missing_tokens"))  # null is no tokens
  mixed.record(b'{"tokens": ["a"], "labels": "X"}', Dead("wrong_type_labels"))
  for label in [b"true", b"null", b"1.5", b'["X"]', b'{"x": 1}']:
    mixed.record(b'{"tokens": ["a"], "labels": [' + label + b"]}", Dead("wrong_type_labels"))
  mixed.record(*tagged(["Bob", "runs"], [7, 8]))  # integer labels are kept as strings
  mixed.record(b'{"tokens": ["a", "b"], "labels": ["X"]}', Dead("label_count_mismatch"))
  mixed.record(b'{"tokens": ["a"], "labels": ["X", "Y"]}', Dead("label_count_mismatch"))
  mixed.record(b'{"tokens": [], "labels": ["X"]}', Dead("label_count_mismatch"))
  mixed.record(b'{"tokens": ["a b"], "labels": ["X"]}', Dead("bad_token"))
  mixed.record(b'{"tokens": [""], "labels": ["X"]}', Dead("bad_token"))
  mixed.record(b'{"tokens": ["a\\u0000b"], "labels": ["X"]}', Dead("bad_token"))  # escaped NUL
  mixed.record(b'{"tokens": ["a"], "labels": ["X\\tY"]}', Dead("bad_label"))
  mixed.record(b'{"tokens": ["a"], "labels": ["  "]}', Dead("bad_label"))
  mixed.record(b'{"tokens": ["caf\xe9"], "labels": ["NOUN"]}', Dead("undecodable"))
  mixed.record(b'{"tokens": ["\xff"], "labels": ["X"]}', Dead("undecodable"))
  mixed.record(b'{"tokens": ["a\x00"], "labels": ["X"]}', Dead("nul_byte"))  # a raw NUL byte
  too_long, _ = tagged(["word"] * 20, ["NOUN"] * 20)  # valid JSON, but over the limit
  assert len(too_long) > MAX_RECORD_BYTES
  mixed.record(too_long, Dead("record_too_long"))
  mixed.record(*tagged(["Alice", "sees", "the", "dog", "!"], ["PROPN", "VERB", "DET", "NOUN", "PUNCT"]))
  mixed.record(*tagged(["Bob", "sleeps"], ["PROPN", "VERB"], id=3, text="other fields are ignored"))
  mixed.record(*tagged(["café", "東京", "😀"], ["NOUN", "PROPN", "SYM"]))
  # Tokens of several code points: a combining mark, a flag, a ZWJ sequence, right-to-left scripts.
  mixed.record(*tagged(["e\u0301", "🇳🇴", "👩\u200d💻", "مرحبا", "שָׁלוֹם"], ["X", "SYM", "SYM", "INTJ", "INTJ"]))
  mixed.record('{"tokens": ["\u00a0x"], "labels": ["X"]}'.encode("utf-8"), Dead("bad_token"))  # a no-break space

  zero = CorpusFile(directory, "zero_bytes.jsonl")

  no_newline = CorpusFile(directory, "no_final_newline.jsonl")
  no_newline.record(*tagged(["Dogs", "bark"], ["NOUN", "VERB"]))
  no_newline.record(*tagged(["Cats", "purr"], ["NOUN", "VERB"]), end=b"")

  ends = CorpusFile(directory, "line_ends.jsonl")
  ends.record(*tagged(["crlf"], ["X"]), end=b"\r\n")
  ends.record(*tagged(["lf"], ["X"]), end=b"\n")
  ends.record(*tagged(["cr", "one"], ["X", "Y"]), end=b"\r")
  ends.record(*tagged(["cr", "two"], ["X", "Y"]), end=b"\r")
  ends.record(b"", EMPTY, end=b"\r\n")
  # A raw CR inside an object is a line end to the reader: two records, two bad_json.
  ends.record(b'{"tokens": ["a"],', Dead("bad_json"), end=b"\r")
  ends.record(b'"labels": ["X"]}', Dead("bad_json"), end=b"\n")
  ends.record(b"  ", EMPTY, end=b"\r")
  ends.record(b"\x00", Dead("nul_byte"), end=b"\r\n")
  ends.record(*tagged(["last"], ["X"]), end=b"\n")

  binary = CorpusFile(directory, "binary.jsonl")
  binary.record('{"tokens": ["naïve"], "labels": ["ADJ"]}'.encode("latin-1"), Dead("undecodable"))
  binary.record(*tagged(["plain"], ["ADJ"]))
  encoded = '\ufeff{"tokens": ["utf16"], "labels": ["X"]}\n'.encode("utf-16-le")
  parts = encoded.split(b"\n")
  for part in parts[:-1]:
    binary.record(part, Dead("nul_byte"))
  binary.record(parts[-1], Dead("nul_byte"), end=b"")  # b"\x00", no final newline

  bom = CorpusFile(directory, "bom.jsonl", bom=True)
  bom.record(*tagged(["EU", "rejects"], ["B-ORG", "O"]))
  bom_gz = CorpusFile(directory, "bom.jsonl.gz", bom=True)
  bom_gz.record(*tagged(["German", "call"], ["B-MISC", "O"]))
  bom_gz.record(b"{oops", Dead("bad_json"))
  return [mixed, zero, no_newline, ends, binary, bom, bom_gz]


def conll_tag_corpus(directory):
  mixed = CorpusFile(directory, "mixed.conll")
  mixed.line(b"-DOCSTART- -X- O O")
  mixed.line(b"")
  mixed.line(b"# sent_id = 1")  # a comment
  mixed.block(*conll_good(("The", "DET"), ("cat", "NOUN"), ("sleeps", "VERB"), (".", "PUNCT")))
  mixed.line(b"")
  mixed.block([b"A\tDET", b"lonely", b"runs\tVERB"], Dead("conll_one_column"))  # a token without label
  mixed.line(b"   ")  # whitespace only: a separator
  mixed.block(*conll_good(("Alice", "PROPN"), ("sees", "VERB")))
  mixed.line(b"\t")
  mixed.line(b"")
  mixed.block([b"caf\xe9\tNOUN"], Dead("undecodable"))
  mixed.line(b"")
  mixed.block([b"a\tDET", b"nul\x00\tX"], Dead("nul_byte"))
  mixed.line(b" \t \x0b\x0c")
  mixed.block([b"New York\tPROPN"], Dead("bad_token"))  # a space inside a tab-separated token
  mixed.line(b"")
  mixed.block([b"\tX"], Dead("bad_token"))  # an empty token column
  mixed.line(b"")
  mixed.block([b"dog\t"], Dead("bad_label"))  # an empty label column
  mixed.line(b"")
  mixed.block([b"Bob\tB-\x01"], Dead("bad_label"))  # a control character in a label
  mixed.line(b"")
  long_rows = [b"word\tNOUN"] * 20
  assert len(b"\n".join(long_rows)) > MAX_RECORD_BYTES
  mixed.block(long_rows, Dead("record_too_long"))
  mixed.line(b"")
  mixed.block(*conll_good(("The", "DT", "DET"), ("old", "JJ", "ADJ"), ("cat", "NN", "NOUN")))
  mixed.line(b"")
  mixed.block(*conll_good(("café", "NOUN"), ("東京", "PROPN"), ("😀", "SYM")))
  mixed.line(b"")

  zero = CorpusFile(directory, "zero_bytes.conll")

  no_newline = CorpusFile(directory, "no_final_newline.conll")
  no_newline.block(*conll_good(("Dogs", "NOUN"), ("bark", "VERB")))
  no_newline.line(b"")
  rows, good = conll_good(("Cats", "NOUN"), ("purr", "VERB"))
  no_newline.block(rows, good, ends=[b"\n", b""])  # no final newline and no final blank line

  ends = CorpusFile(directory, "line_ends.conll")
  rows, good = conll_good(("Bob", "PROPN"), ("runs", "VERB"))
  ends.block(rows, good, ends=[b"\r\n", b"\r\n"])
  ends.line(b"", b"\r\n")
  rows, good = conll_good(("A", "DET"), ("dog", "NOUN"))
  ends.block(rows, good, ends=[b"\r", b"\r"])
  ends.line(b"", b"\r")
  rows, good = conll_good(("The", "DET"), ("cat", "NOUN"), ("runs", "VERB"))
  ends.block(rows, good, ends=[b"\n", b"\r\n", b"\r"])
  ends.line(b"", b"\r\n")  # '\r\r\n': the block's last line end, then a blank line
  ends.block([b"lonely"], Dead("conll_one_column"), ends=[b"\r\n"])
  ends.line(b"  ", b"\r")
  ends.block(*conll_good(("last", "X")))

  binary = CorpusFile(directory, "binary.conll")
  binary.block(["naïve\tADJ".encode("latin-1"), b"cat\tNOUN"], Dead("undecodable"))
  binary.line(b"")
  binary.block(*conll_good(("plain", "ADJ")))
  binary.line(b"")
  binary.block([b"\x00\tX"], Dead("nul_byte"))
  binary.line(b"")
  binary.block([b"cut\tX", b"short\xe6\x9d\tY"], Dead("undecodable"), ends=[b"\n", b""])

  spaced = CorpusFile(directory, "spaced.conll")  # no tab anywhere: columns split on spaces
  spaced.block([b"Peter   B-PER", b"Blackburn I-PER"], Good(("Peter", "Blackburn"), ("B-PER", "I-PER")))
  spaced.line(b"")
  spaced.block([b"EU NNP B-ORG", b"lonely"], Dead("conll_one_column"))
  spaced.line(b"")
  spaced.block([b"EU NNP B-ORG"], Good(("EU",), ("B-ORG",)))

  bom = CorpusFile(directory, "bom.conll", bom=True)
  bom.block(*conll_good(("EU", "B-ORG"), ("rejects", "O")))
  bom.line(b"")
  bom.block(*conll_good(("German", "B-MISC")))
  bom_gz = CorpusFile(directory, "bom.conll.gz", bom=True)
  bom_gz.line(b"")  # the mark, then a blank line: no record
  bom_gz.block(*conll_good(("British", "B-MISC"), ("lamb", "O")))
  return [mixed, zero, no_newline, ends, binary, spaced, bom, bom_gz]


CORPORA = {
    "text-lm": ("text", "lm", text_corpus),
    "jsonl-tag": ("jsonl", "tag", jsonl_tag_corpus),
    "conll-tag": ("conll", "tag", conll_tag_corpus),
}


# --- the end-to-end test ---------------------------------------------------------------


def read_dead_letters(output_dir):
  with open(os.path.join(output_dir, contract.ERRORS_DIR, "dead_letter.jsonl"), encoding="utf-8", newline="") as f:
    text = f.read()
  assert text == "" or text.endswith("\n")
  return [json.loads(line) for line in text.split("\n")[:-1]]


def decode_records(output_dir, task):
  token_vocab = contract.read_vocab(os.path.join(output_dir, contract.VOCAB_FILE))
  label_vocab = contract.read_vocab(os.path.join(output_dir, contract.LABELS_FILE)) if task == "tag" else None
  decoded = []
  for record in read_records(output_dir, "train"):
    tokens = tuple(token_vocab[i] for i in record["tokens"])
    labels = tuple(label_vocab[i] for i in record["labels"]) if label_vocab else None
    decoded.append(Good(tokens, labels))
  return decoded


@pytest.mark.parametrize("corpus", list(CORPORA))
def test_every_bad_input_kind_in_one_corpus(tmp_path, corpus):
  file_format, task, build = CORPORA[corpus]
  (tmp_path / "in").mkdir()
  files = build(tmp_path / "in")
  paths = sorted(corpus_file.write() for corpus_file in files)
  assert any(os.path.getsize(path) == 0 for path in paths)
  assert len(set(paths)) == len(files)
  # Not read: a hidden file and a directory inside --input DIR (both would add dead letters).
  (tmp_path / "in" / ".hidden").write_bytes(b"\xff\xfe not a record\n")
  (tmp_path / "in" / "sub").mkdir()
  (tmp_path / "in" / "sub" / "inner").write_bytes(b"\xff\xfe not a record\n")

  # Expectations, from how the corpus was built.
  fates = [(f.path, offset, raw, fate) for f in files for offset, raw, fate in f.records]
  good = collections.Counter(fate for _, _, _, fate in fates if isinstance(fate, Good))
  filtered = collections.Counter(fate.reason for _, _, _, fate in fates if isinstance(fate, Filtered))
  dead = collections.Counter(fate.reason for _, _, _, fate in fates if isinstance(fate, Dead))
  read = len(fates)
  written = read - sum(filtered.values()) - sum(dead.values())
  # Every good record fits the limit, and the job stays within --max_error_fraction 0.9.
  assert all(len(raw) <= MAX_RECORD_BYTES for _, _, raw, fate in fates if isinstance(fate, Good))
  assert sum(dead.values()) <= 0.9 * read
  if file_format == "conll":
    assert not filtered  # blank and whitespace-only lines separate blocks: never records

  out = tmp_path / "out"
  process = preprocess(tmp_path / "in", out, file_format, task,
                       "--max_record_bytes", MAX_RECORD_BYTES, "--max_error_fraction", "0.9",
                       "--eval_fraction", "0", "--no-lowercase", check=False)
  assert process.returncode == 0, process.stderr[-4000:]
  assert os.path.exists(out / contract.COMPLETED_FILE)
  assert not os.path.exists(out / ".tmp")
  metadata = read_metadata(out)
  assert sorted(entry["file"] for entry in metadata["inputs"]) == paths

  counts = metadata["counts"]
  assert counts["read"] == counts["written"] + sum(counts["filtered"].values()) + sum(counts["dead_letter"].values())
  assert counts == {"read": read, "written": written, "filtered": dict(filtered), "dead_letter": dict(dead),
                    "truncated": 0, **({"truncated_chars": 0} if task == "tag" else {})}
  assert metadata["splits"]["train"]["examples"] == written and metadata["splits"]["eval"]["examples"] == 0
  assert (f"Wrote {written} train and 0 eval examples ({read} read, {sum(filtered.values())} filtered, "
          f"{sum(dead.values())} dead letters, 0 truncated)") in process.stdout

  # One errors/ row per dead letter, each at its file and offset, holding its record.
  rows = read_dead_letters(out)
  assert len(rows) == sum(counts["dead_letter"].values())
  assert all(set(row) == {"reason", "file", "offset", "record"} for row in rows)
  assert all(row["file"] in paths for row in rows)
  expected_rows = {(path, offset): (raw, fate.reason) for path, offset, raw, fate in fates if isinstance(fate, Dead)}
  assert collections.Counter((row["file"], row["offset"], row["reason"]) for row in rows) == collections.Counter(
      (path, offset, reason) for (path, offset), (_, reason) in expected_rows.items())
  for row in rows:
    raw, reason = expected_rows[(row["file"], row["offset"])]
    if reason == "record_too_long":  # the start of the line (a CRLF's CR may be in it)
      assert row["record"] and (raw + b"\r").startswith(row["record"].encode("utf-8")), row
    else:
      assert row["record"] == raw.decode("utf-8", errors="replace"), row
  # A few by name (the exact check above already ties every row to its file and offset).
  files_by_reason = collections.defaultdict(set)
  for row in rows:
    files_by_reason[row["reason"]].add(os.path.basename(row["file"]))
  extension = {"text": "txt"}.get(file_format, file_format)
  assert f"mixed.{extension}" in files_by_reason["record_too_long"]
  assert f"mixed.{extension}" in files_by_reason["undecodable"]
  assert ("latin1.txt" if file_format == "text" else f"binary.{extension}") in files_by_reason["undecodable"]
  if file_format == "text":
    assert files_by_reason["nul_byte"] == {"mixed.txt", "line_ends.txt", "utf16.txt"}
    assert "long_tail.txt" in files_by_reason["record_too_long"]

  # The good records come back intact (every record is in train: --eval_fraction 0), and
  # no byte-order mark is part of a token.
  assert collections.Counter(decode_records(out, task)) == good
  assert not [token for token in contract.read_vocab(os.path.join(out, contract.VOCAB_FILE)) if "\ufeff" in token]


# --- bugs, pinned on the reader (kept out of the corpora above) -----------------------


def read_directly(tmp_path, data: bytes, file_format: str, task: str, max_record_bytes=MAX_RECORD_BYTES,
                  encoding="utf-8"):
  """Runs the reader's DoFn on one file: (good records, dead-letter reasons, records read)."""
  import apache_beam as beam  # pylint: disable=g-import-not-at-top
  from pipeline import arrow, counts, read  # pylint: disable=g-import-not-at-top
  from tests.pipeline.beam_testing import run_bundle  # pylint: disable=g-import-not-at-top
  path = tmp_path / f"input.{file_format}"
  path.write_bytes(data)
  if file_format == "conll":
    do_fn = read.ReadConllDoFn(task, max_record_bytes, encoding=encoding)
  else:
    do_fn = read.ReadLinesDoFn(file_format, task, max_record_bytes, encoding=encoding)
  good, dead, totals = [], [], collections.Counter()
  for output in run_bundle(do_fn, [read.FileRange(str(path), 0, -1)]):
    if isinstance(output, beam.pvalue.TaggedOutput):
      if output.tag == counts.DEAD_LETTER:
        dead.append(output.value["reason"])
      else:
        totals[output.value[0]] += output.value[1]
    else:
      for row in output.to_pylist():  # `text` and `label` hold one value, the others lists
        good.append({k: [v.decode("utf-8") for v in values] if k in ("tokens", "labels") else values[0].decode("utf-8")
                     for k, values in row.items() if k != arrow.SPLIT_KEY})
  return good, dead, totals[counts.READ]


@pytest.mark.parametrize("end", [
    b"\n",
    b"\r\n",
    b"",
])
def test_one_byte_over_the_limit_is_a_dead_letter_whatever_the_line_end(tmp_path, end):
  data = b"ok\n" + b"x" * (MAX_RECORD_BYTES + 1) + end + (b"after\n" if end else b"")
  good, dead, read = read_directly(tmp_path, data, "text", "lm")
  assert dead == ["record_too_long"]
  assert [g["text"] for g in good] == (["ok", "after"] if end else ["ok"])
  assert read == len(good) + 1


@pytest.mark.parametrize("data,expected", [
    # 40 short records, each ended by a lone CR (the last by CRLF), 300 bytes in all.
    (b"\r".join(b"line %02d" % i for i in range(40)) + b"\r\n", [f"line {i:02d}" for i in range(40)]),
    # A record of exactly the limit, a lone CR, then a short record.
    (b"m" * MAX_RECORD_BYTES + b"\rshort\n", ["m" * MAX_RECORD_BYTES, "short"]),
])
def test_lone_cr_records_are_not_merged_when_long(tmp_path, data, expected):
  good, dead, read = read_directly(tmp_path, data, "text", "lm")
  assert dead == []
  assert [g["text"] for g in good] == expected
  assert read == len(expected)


@pytest.mark.parametrize("line,task", [
    (b'{"tokens": ["a\\ud800"], "labels": ["X"]}', "tag"),
    (b'{"tokens": ["a"], "labels": ["\\udc80"]}', "tag"),
    (b'{"text": "a \\ud800 b", "label": "pos"}', "classify"),
])
def test_lone_surrogate_escapes_are_dead_letters(tmp_path, line, task):
  fields = {"tag": '"tokens": ["fine"], "labels": ["X"]', "classify": '"text": "fine", "label": "pos"'}[task]
  good_line = ("{" + fields + "}").encode()
  good, dead, read = read_directly(tmp_path, good_line + b"\n" + line + b"\n" + good_line + b"\n", "jsonl", task)
  assert len(good) == 2 and dead == ["undecodable"] and read == 3


def test_deeply_nested_json_is_a_dead_letter(tmp_path):
  data = b'{"tokens": ["a"], "labels": ["X"]}\n' + b"[" * 100_000 + b"\n"
  good, dead, read = read_directly(tmp_path, data, "jsonl", "tag", max_record_bytes=1 << 20)
  assert len(good) == 1 and dead == ["bad_json"] and read == 2


def test_a_conll_line_of_unicode_whitespace_separates_sentences_like_an_empty_one(tmp_path):
  data = "a\tX\nb\tY\n\u00a0\u3000\nc\tZ\n".encode("utf-8")
  good, dead, read = read_directly(tmp_path, data, "conll", "tag")
  assert dead == [] and read == 2
  assert [g["tokens"] for g in good] == [["a", "b"], ["c"]]

