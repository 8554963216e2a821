"""ReadCorpus and Split as Beam transforms, on files written by the tests."""

import collections
import gzip
import io
import itertools
import random

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
from apache_beam.testing.util import assert_that, equal_to

from corpus import lines as corpus_lines
from corpus import records
from pipeline import arrow, counts, read, split
from pipeline import inputs as lines_lib
from tests.pipeline.beam_testing import run_bundle, test_pipeline


def rows(batch: pa.RecordBatch):
  """A RecordBatch → tuples of decoded column values (lists of str), split key dropped."""
  names = [n for n in batch.schema.names if n != arrow.SPLIT_KEY]
  columns = [batch.column(n).to_pylist() for n in names]
  return [tuple(tuple(v.decode() for v in cell) for cell in row) for row in zip(*columns)]


def read_corpus(paths, file_format, task, max_record_bytes=1 << 20):
  files = [lines_lib.InputFile(str(p), p.stat().st_size) for p in paths]
  return read.ReadCorpus(files, file_format, task, max_record_bytes)


@pytest.mark.parametrize("range_bytes", [7, 64, 1 << 20])
def test_text_ranges_read_every_line_exactly_once(tmp_path, monkeypatch, range_bytes):
  monkeypatch.setattr(lines_lib, "RANGE_BYTES", range_bytes)
  lines = [f"line {i} " + "x" * (i % 13) for i in range(200)]
  path = tmp_path / "a.txt"
  path.write_bytes(("\n".join(lines[:100]) + "\r\n" + "\r\n".join(lines[100:150]) + "\r"
                    + "\r".join(lines[150:])).encode())  # \n, \r\n and lone \r line ends
  with test_pipeline() as p:
    out = p | read_corpus([path], "text", "lm")
    assert_that(out.records | beam.FlatMap(rows) | beam.Map(lambda r: r[0][0]), equal_to(lines), label="lines")
    assert_that(out[counts.COUNTS] | beam.CombinePerKey(sum), equal_to([("read", 200)]), label="counts")


def test_conll_blocks_docstart_comments_and_spaces(tmp_path):
  tabbed = tmp_path / "a.conll"
  tabbed.write_text("-DOCSTART- -X- O O\n\n# sent_id = 1\nEU\tNNP\tB-ORG\nrejects\tVBZ\tO\n\n"
                    "German\tJJ\tB-MISC\n\n\nlonely\n\n", encoding="utf-8")
  spaced = tmp_path / "b.conll"  # no tab anywhere: columns split on runs of spaces
  spaced.write_text("Peter   B-PER\nBlackburn I-PER\n", encoding="utf-8")  # no final blank line
  with test_pipeline() as p:
    out = p | read_corpus([tabbed, spaced], "conll", "tag")
    assert_that(out.records | beam.FlatMap(rows), equal_to([
        (("",), ("EU", "rejects"), ("B-ORG", "O")),
        (("",), ("German",), ("B-MISC",)),
        (("",), ("Peter", "Blackburn"), ("B-PER", "I-PER")),
    ]), label="records")
    assert_that(out[counts.DEAD_LETTER] | beam.Map(lambda d: (d["reason"], d["record"])),
                equal_to([("conll_one_column", "lonely")]), label="dead")


def test_record_too_long_is_a_dead_letter(tmp_path):
  path = tmp_path / "long.txt"
  path.write_bytes(b"short\n" + b"y" * 5000 + b"\nafter\n")
  with test_pipeline() as p:
    out = p | read_corpus([path], "text", "lm", max_record_bytes=1000)
    assert_that(out.records | beam.FlatMap(rows) | beam.Map(lambda r: r[0][0]),
                equal_to(["short", "after"]), label="kept")
    assert_that(out[counts.DEAD_LETTER] | beam.Map(lambda d: (d["reason"], d["offset"])),
                equal_to([("record_too_long", 6)]), label="dead")


def test_split_is_stable_and_respects_the_fraction(tmp_path):
  path = tmp_path / "a.txt"
  path.write_text("".join(f"sentence number {i}\n" for i in range(2000)), encoding="utf-8")
  texts = [records.Record(text=f"sentence number {i}") for i in range(2000)]
  threshold = split.split_fraction_threshold(0.25)
  expected_eval = sorted(r.text for r in texts if records.content_key(r) < threshold)
  assert 400 < len(expected_eval) < 600
  with test_pipeline() as p:
    corpus = p | read_corpus([path], "text", "lm")
    splits = corpus.records | split.Split(0.25)
    assert_that(splits["eval"] | "EvalRows" >> beam.FlatMap(rows) | beam.Map(lambda r: r[0][0]),
                equal_to(expected_eval), label="eval")
    assert_that(splits["train"] | "TrainRows" >> beam.FlatMap(rows) | beam.combiners.Count.Globally(),
                equal_to([2000 - len(expected_eval)]), label="train")


def test_content_key_is_stable_and_content_sensitive():
  key = records.content_key(records.Record(tokens=["a", "b"], labels=["X", "Y"]))
  assert key == records.content_key(records.Record(tokens=["a", "b"], labels=["X", "Y"]))
  assert key != records.content_key(records.Record(tokens=["a", "b"], labels=["X", "Z"]))
  assert key != records.content_key(records.Record(tokens=["ab"], labels=["X", "Y"]))


# --- plain text: the block fast path against the per-line reader ----------------------


def read_text_line_by_line(path, ranges, max_record_bytes):
  """What ReadLinesDoFn gives for text, from `read_lines` and parse_text_line alone."""
  texts, keys, dead, totals = [], [], [], collections.Counter()
  for file_range in ranges:
    with lines_lib.open_for_lines(file_range.path) as f:
      start = lines_lib.seek_to_range(f, file_range)
      for offset, line, too_long, _ in corpus_lines.read_lines(f, start, file_range.end, max_record_bytes):
        totals[counts.READ] += 1
        if too_long:
          dead.append(read.dead_letter("record_too_long", path, offset, line))
          continue
        try:
          record = records.parse_text_line(line, "lm")
        except records.Filtered as filtered:
          totals[counts.key(counts.FILTERED, filtered.reason)] += 1
        except records.BadRecord as bad:
          dead.append(read.dead_letter(bad.reason, path, offset, line))
        else:
          texts.append(record.text)
          keys.append(records.content_key(record))
  return texts, keys, dead, totals


def read_text_with_do_fn(ranges, max_record_bytes):
  texts, keys, dead, totals = [], [], [], collections.Counter()
  for file_range in ranges:
    batch_sizes = []
    for output in run_bundle(read.ReadLinesDoFn("text", "lm", max_record_bytes), [file_range]):
      if isinstance(output, beam.pvalue.TaggedOutput):
        if output.tag == counts.DEAD_LETTER:
          dead.append(output.value)
        else:
          totals[output.value[0]] += output.value[1]
        continue
      assert output.schema == arrow.arrow_schema("lm")
      assert output.column("tokens").to_pylist() == [[]] * output.num_rows
      texts += [cell[0].decode("utf-8") for cell in output.column("text").to_pylist()]
      keys += output.column(arrow.SPLIT_KEY).to_pylist()
      batch_sizes.append(output.num_rows)
    # Full batches but the last, as the per-line reader makes them.
    assert all(size == arrow.BATCH_SIZE for size in batch_sizes[:-1]) and batch_sizes[-1:] <= [arrow.BATCH_SIZE]
  return texts, keys, dead, totals


def mixed_text(rng: random.Random, num_lines: int) -> bytes:
  """Mostly clean lines, some blank (ASCII or Unicode whitespace), one in twenty odd."""
  clean = ["the cat sleeps", "naïve café 東京 😀", "  indented\tand tabbed ", "a" * 60, "“quoted” — dash",
           "\u00a0leading no-break space", "x\u3000y", "\x01\x07 controls", "sep\x1finside"]
  blank = ["", " ", "\t \x0b\x0c", "\u00a0", "\u3000 \u2003", " \x1c\x1d", "\x1e\x1f", "\u0085",
           "\u2028\u2029"]
  odd = [b"caf\xe9", b"cut \xe6\x9d", b"\xed\xa0\x80 surrogate", b"nul \x00 inside", b"\x00",
         b"y" * 81, b"z" * 300, b"lone\rcr", b"\r", b"two\r\rcrs", b"crlf inside\r\nline",
         b"\r".join([b"short"] * 10 + [b"w" * 200, b"v" * 80, b"tail"])]  # long, of short and long records
  out = bytearray()
  for _ in range(num_lines):
    roll = rng.random()
    if roll < 0.8:
      line = rng.choice(clean).encode("utf-8")
    elif roll < 0.95:
      line = rng.choice(blank).encode("utf-8")
    else:
      line = rng.choice(odd)
    out += line + (b"\r\n" if rng.random() < 0.3 else b"\n")
  return bytes(out) + "no final newline 終".encode("utf-8")


@pytest.mark.parametrize("range_bytes,block_bytes,min_block_bytes,crlf_file", [
    (1 << 20, 8 << 20, 64 << 10, False),  # the defaults: one range, one block
    (1 << 20, 1000, 0, False),  # many blocks, the odd ones halved down to single lines
    (997, 300, 50, False),  # ranges and blocks cut mid-line
    (64, 16, 1, False),  # blocks shorter than lines: each finished by a readline
    (5000, 1, 0, False),  # every block one line; long ones read by `read_lines` from the file
    (1 << 20, 777, 100, True),  # CRLF everywhere: still the fast path
])
def test_text_blocks_give_what_the_per_line_reader_gives(tmp_path, monkeypatch, range_bytes, block_bytes,
                                                         min_block_bytes, crlf_file):
  monkeypatch.setattr(lines_lib, "RANGE_BYTES", range_bytes)
  monkeypatch.setattr(corpus_lines, "TEXT_BLOCK_BYTES", block_bytes)
  monkeypatch.setattr(corpus_lines, "TEXT_BLOCK_MIN_BYTES", min_block_bytes)
  monkeypatch.setattr(arrow, "BATCH_SIZE", 64)
  data = mixed_text(random.Random(range_bytes + block_bytes), 3000)
  if crlf_file:
    data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
  path = tmp_path / "mixed.txt"
  path.write_bytes(data)
  plain_blocks = []  # what plain_text_lines gave for each block
  real_plain_text_lines = corpus_lines.plain_text_lines

  def plain_text_lines(*args):
    plain_blocks.append(real_plain_text_lines(*args))
    return plain_blocks[-1]

  monkeypatch.setattr(corpus_lines, "plain_text_lines", plain_text_lines)
  ranges = list(lines_lib.split_into_ranges(lines_lib.InputFile(str(path), len(data))))
  assert len(ranges) == -(-len(data) // range_bytes)

  expected = read_text_line_by_line(str(path), ranges, max_record_bytes=80)
  got = read_text_with_do_fn(ranges, max_record_bytes=80)

  assert got[0] == expected[0]  # the same good records in the same order,
  assert got[1] == expected[1]  # with the same split keys,
  assert got[2] == expected[2]  # the same dead letters (reason, offset, record),
  assert got[3] == expected[3]  # and the same counts
  texts, _, dead, totals = expected
  assert len(texts) > 2000 and totals["filtered/empty"] > 300 and len(dead) > 50
  assert {letter["reason"] for letter in dead} == {"undecodable", "nul_byte", "record_too_long"}
  assert totals[counts.READ] == len(texts) + totals["filtered/empty"] + len(dead)
  fast_lines = sum(len(good) + blank for good, blank in filter(None, plain_blocks))
  if min_block_bytes < len(data) // 10:  # the odd lines halved out: the rest is fast
    assert fast_lines > totals[counts.READ] // 2


def test_text_blocks_of_a_compressed_file(tmp_path, monkeypatch):
  monkeypatch.setattr(corpus_lines, "TEXT_BLOCK_BYTES", 100)  # and reads past blocks need no seek
  monkeypatch.setattr(corpus_lines, "TEXT_BLOCK_MIN_BYTES", 0)
  path = tmp_path / "mixed.txt.gz"
  with gzip.open(path, "wb") as f:
    f.write(mixed_text(random.Random(1), 500))
  ranges = list(lines_lib.split_into_ranges(lines_lib.InputFile(str(path), path.stat().st_size)))
  assert ranges == [lines_lib.FileRange(str(path), 0, -1, path.stat().st_size)]
  assert read_text_with_do_fn(ranges, 80) == read_text_line_by_line(str(path), ranges, 80)


def test_a_block_with_odd_lines_is_halved_at_a_line_start():
  assert corpus_lines.middle_line_start(b"aaaa\nbbbb\n") == 5
  assert corpus_lines.middle_line_start(b"a\n" + b"b" * 10 + b"\n") == 2  # no line starts after the middle
  assert corpus_lines.middle_line_start(b"b" * 10 + b"\n") == 0


def test_text_content_keys_equal_content_key():
  texts = ["", "a", "the cat sleeps", "naïve café 東京 😀", " \t ", "\x1e\x1f inside", "x" * 300]
  lines = [text.encode("utf-8") for text in texts]
  keys = arrow.text_content_keys(lines)
  assert keys.dtype == np.uint64
  assert keys.tolist() == [records.content_key(records.Record(text=text)) for text in texts]
  batch = arrow.text_record_batch(lines)
  assert batch.equals(arrow.to_record_batch([records.Record(text=text) for text in texts], "lm"))


def test_every_whitespace_character_is_blank_on_the_fast_path_too():
  # str.strip() strips more than bytes.strip(); the fast path finds those lines by their
  # first byte (see corpus_lines._MAYBE_UNICODE_BLANK), so every such character must start so.
  beyond_ascii = [chr(c) for c in range(0x110000)
                  if chr(c).isspace() and not chr(c).encode("utf-8").isspace()]
  assert {char.encode("utf-8")[0] for char in beyond_ascii} == set(b"\x1c\x1d\x1e\x1f\xc2\xe1\xe2\xe3")
  lines = [line for char in beyond_ascii
           for line in (char, " " + char + "\t", char * 2, char + "x", "x" + char, "\u00a0" + char + "y")]
  expected_good = [line for line in lines if line.strip()]
  block = "".join(line + "\n" for line in lines).encode("utf-8")
  good, blank = corpus_lines.plain_text_lines(block, 100)
  assert [line.decode("utf-8") for line in good] == expected_good
  assert blank == len(lines) - len(expected_good) == 3 * len(beyond_ascii)


def test_is_utf8_agrees_with_python():
  # Representatives of each kind of byte in all sequences of one and of three; all pairs.
  kinds = (b"\x00\x41\x7f\x80\x8f\x90\x9f\xa0\xbf\xc0\xc1\xc2\xdf"
           b"\xe0\xe1\xec\xed\xee\xef\xf0\xf1\xf3\xf4\xf5\xff")
  sequences = [bytes(s) for n in (1, 3) for s in itertools.product(kinds, repeat=n)]
  sequences += [bytes([a, b]) for a in range(256) for b in range(256)]
  sequences += ["\U0010ffff".encode(), b"\xf4\x90\x80\x80", b"\xf0\x8f\xbf\xbf", b"ok \xe2\x82"]

  def python_says(data):
    try:
      data.decode("utf-8")
    except UnicodeDecodeError:
      return False
    return True

  assert [corpus_lines.is_valid_utf8(s) for s in sequences] == [python_says(s) for s in sequences]


def test_a_conll_file_larger_than_a_range_is_read_once(tmp_path, monkeypatch):
  monkeypatch.setattr(lines_lib, "RANGE_BYTES", 64)  # a CoNLL file is read whole, never in ranges
  path = tmp_path / "big.conll"
  path.write_text("".join(f"w{i}\tA\nx\tB\n\n" for i in range(100)))
  assert path.stat().st_size > 10 * lines_lib.RANGE_BYTES
  with test_pipeline() as p:
    out = p | read_corpus([path], "conll", "tag")
    assert_that(out.records | beam.FlatMap(rows) | beam.Map(lambda r: r[1][0]),
                equal_to([f"w{i}" for i in range(100)]), label="records")
    assert_that(out[counts.COUNTS] | beam.CombinePerKey(sum), equal_to([("read", 100)]), label="counts")


@pytest.mark.parametrize("max_record_bytes", [1, 2, 3, 7, 1 << 20])
def test_read_lines_splits_as_splitlines_does(max_record_bytes):
  rng = random.Random(max_record_bytes)
  data = b"".join(rng.choice([b"a", b"bc", b"\t", b"\n", b"\r", b"\r\n", b"\n\n", b"\x1c"]) for _ in range(3000))
  long_line = b"x" * (5 * max_record_bytes + 3)  # a line across several pieces, ending in each way
  for text in (data, data + b"\r", data + b"tail", b"", b"\r", b"\r\n", long_line,
               b"a\n" + long_line + b"\r\nb", long_line + b"\r" + long_line, long_line + b"\r\r\n\n"):
    expected, offset = [], 0
    prefix = min(max_record_bytes + 1, corpus_lines.TOO_LONG_PREFIX_BYTES)  # of a line too long, compared
    for line in text.splitlines(keepends=True):  # the oracle: Python's own line splitting
      body = line.rstrip(b"\r\n")
      too_long = len(body) > max_record_bytes
      expected.append((offset, body[:prefix] if too_long else body, too_long, line[len(body):]))
      offset += len(line)
    got = [(offset, data[:prefix] if too_long else data, too_long, end)
           for offset, data, too_long, end in corpus_lines.read_lines(io.BytesIO(text), 0, -1, max_record_bytes)]
    assert got == expected  # each line with its own line end: together they are the file's bytes


def test_a_conll_record_past_the_limit_is_one_dead_letter(tmp_path):
  path = tmp_path / "long.conll"
  path.write_text("a\tA\n\n" + "".join(f"w{i}\tB\n" for i in range(1000)) + "\nz\tC\n")
  with test_pipeline() as p:
    out = p | read_corpus([path], "conll", "tag", max_record_bytes=100)
    assert_that(out.records | beam.FlatMap(rows) | beam.Map(lambda r: r[1]), equal_to([("a",), ("z",)]),
                label="records")
    assert_that(out[counts.DEAD_LETTER] | beam.Map(lambda d: (d["reason"], d["offset"], d["record"][:6])),
                equal_to([("record_too_long", 5, "w0\tB\nw")]), label="dead")
    assert_that(out[counts.COUNTS] | beam.CombinePerKey(sum), equal_to([("read", 3)]), label="counts")


def test_conll_blank_lines_are_what_str_strip_finds_blank():
  for char in map(chr, range(0x110000)):
    if char.isspace():
      assert records.is_blank(f" {char}\t".encode("utf-8")), hex(ord(char))
  assert not records.is_blank(b"token\tLABEL") and not records.is_blank(b"\x1bx")


@pytest.mark.parametrize("file_format", ["text", "jsonl", "conll"])
def test_small_files_of_one_bundle_share_batches_and_dead_letters_name_their_file(tmp_path, file_format):
  make = {"text": lambda i: f"file {i} line\n\n".encode(),
          "jsonl": lambda i: b'{"text": "file %d line"}\n{oops\n' % i,
          "conll": lambda i: b"file\tA\n%d\tB\n\n" % i}[file_format]
  paths = []
  for i in range(5):
    paths.append(str(tmp_path / f"part-{i}.{file_format}"))
    with open(paths[-1], "wb") as f:
      f.write(make(i))
  task = "tag" if file_format == "conll" else "lm"
  do_fn = (read.ReadConllDoFn(task, 1000) if file_format == "conll"
           else read.ReadLinesDoFn(file_format, task, 1000))
  outputs = list(run_bundle(do_fn, [lines_lib.FileRange(path, 0, -1) for path in paths]))
  batches = [o for o in outputs if not isinstance(o, beam.pvalue.TaggedOutput)]
  assert [batch.num_rows for batch in batches] == [5]  # one batch for the bundle, not one per file
  totals = collections.Counter()
  for output in outputs:
    if isinstance(output, beam.pvalue.TaggedOutput) and output.tag == counts.COUNTS:
      totals[output.value[0]] += output.value[1]
  dead = [o.value for o in outputs if isinstance(o, beam.pvalue.TaggedOutput) and o.tag == counts.DEAD_LETTER]
  assert totals[counts.READ] == {"text": 10, "jsonl": 10, "conll": 5}[file_format]
  if file_format == "jsonl":
    assert sorted(d["file"] for d in dead) == paths and {d["reason"] for d in dead} == {"bad_json"}
  else:
    assert not dead
