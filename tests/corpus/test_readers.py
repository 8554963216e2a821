"""The one reader of raw files (corpus/): CoNLL-U's rules, line ends kept, and the pipeline's
reader and trainer.evaluate/predict's reader giving the same records for awkward files."""

import bz2
import codecs
import collections
import gzip
import io

import apache_beam as beam
import pytest

from corpus import files, lines, reader, records
from pipeline import arrow, counts, read
from tests.pipeline.beam_testing import run_bundle
from trainer import serving

# A CoNLL-U document: comments, a multiword token (range 3-4), an empty node (5.1), a FORM
# with a space, a sentence whose word line has 9 columns, a bad id, and one of ranges only.
CONLLU = "\n".join([
    "# newdoc id = d1",
    "# sent_id = 1",
    "# text = I don't see New York",
    "1\tI\tI\tPRON\tPRP\tCase=Nom\t3\tnsubj\t_\t_",
    "2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_",
    "2\tdo\tdo\tAUX\tVBP\t_\t4\taux\t_\t_",
    "3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_",
    "4\tsee\tsee\tVERB\tVB\t_\t0\troot\t_\t_",
    "4.1\tsaw\tsee\tVERB\tVBD\t_\t_\t_\t4:conj\t_",
    "5\tNew York\tNew York\tPROPN\tNNP\tNumber=Sing\t4\tobj\t_\tSpaceAfter=No",
    "",
    "# sent_id = 2",
    "1\tok\tok\tINTJ\tUH\t_\t0\troot\t_\t_",
    "2\tbroken\tbroken\tADJ\tJJ\t_\t1\tamod\t_",  # 9 columns
    "",
    "1\tbad\tbad\tADJ\tJJ\t_\t0\troot\t_\t_",
    "x\tid\tid\tNOUN\tNN\t_\t1\tdep\t_\t_",  # an id that is no number
    "",
    "1-2\tdunno\t_\t_\t_\t_\t_\t_\t_\t_",  # no words at all
    "",
    "1\tYes\tyes\tINTJ\tUH\t_\t0\troot\t_\t_",
    "",
]) + "\n"


def parse_all(text, label_column=None, task="tag"):
  f = io.BytesIO(text.encode("utf-8"))
  return [(item.record, item.problem)
          for item in reader.read_items(f, "conllu", task, max_record_bytes=1 << 20, label_column=label_column)]


def test_conllu_words_skip_comments_ranges_and_empty_nodes():
  parsed = parse_all(CONLLU)
  assert parsed == [
      (records.Record(tokens=["I", "do", "n't", "see", "New York"], labels=["PRON", "AUX", "PART", "VERB", "PROPN"]), ""),
      (None, "conllu_columns"), (None, "conllu_id"), (None, "conllu_no_words"),
      (records.Record(tokens=["Yes"], labels=["INTJ"]), "")]
  by_column = {column: parse_all(CONLLU, column)[0][0].labels for column in ("xpos", "deprel", "feats", "misc", "3")}
  assert by_column == {"xpos": ["PRP", "VBP", "RB", "VB", "NNP"], "deprel": ["nsubj", "aux", "advmod", "root", "obj"],
                       "feats": ["Case=Nom", "_", "_", "_", "Number=Sing"], "misc": ["_", "_", "_", "_", "SpaceAfter=No"],
                       "3": ["I", "do", "not", "see", "New York"]}
  assert parse_all(CONLLU, task="lm")[0][0] == records.Record(tokens=["I", "do", "n't", "see", "New York"])


def test_label_columns_of_each_format():
  assert records.label_column_index(None, "conll") is None  # the last column
  assert records.label_column_index("2", "conll") == 1 and records.label_column_index("upos", "conllu") == 3
  for bad, file_format in (("1", "conll"), ("upos", "conll"), ("11", "conllu"), ("lemmas", "conllu")):
    with pytest.raises(ValueError, match="--label_column"):
      records.label_column_index(bad, file_format)
  rows = ["EU\tNNP\tB-NP\tB-ORG", "rejects\tVBZ\tB-VP\tO"]
  assert records.parse_conll_block(rows, True, "tag", 1).labels == ["NNP", "VBZ"]
  assert records.parse_conll_block(rows, True, "tag").labels == ["B-ORG", "O"]
  with pytest.raises(records.BadRecord, match="conll_missing_column"):
    records.parse_conll_block(rows + ["short\tX"], True, "tag", 3)


@pytest.mark.parametrize("max_record_bytes", [70, 1 << 20])  # 70: every line fits, a sentence does not
def test_lines_and_their_ends_are_the_files_bytes(max_record_bytes):
  data = CONLLU.encode().replace(b"\n", b"\r\n", 3).replace(b"\n\n", b"\r\r", 1) + b"tail\r"
  got = b"".join(line.data + line.end for line in lines.read_lines(io.BytesIO(data), 0, -1, 1 << 20))
  assert got == data
  blocks = reader.read_items(io.BytesIO(data), "conllu", "tag", max_record_bytes=max_record_bytes,
                             keep_skipped=True)
  kept = b"".join(line.data + line.end for item in blocks for line in list(item.skipped) + list(item.lines))
  assert kept == data  # every line in exactly one item, even past the record limit


def pipeline_read(path, file_format, task, encoding):
  """What the pipeline's reader DoFn gives for one whole file: records, dead letters by
  (reason, offset), records read."""
  if file_format in reader.BLOCK_FORMATS:
    do_fn = read.ReadConllDoFn(task, 1 << 20, encoding=encoding, file_format=file_format)
  else:
    do_fn = read.ReadLinesDoFn(file_format, task, 1 << 20, encoding=encoding)
  good, dead, totals = [], [], collections.Counter()
  for output in run_bundle(do_fn, [read.FileRange(str(path), 0, -1)]):
    if isinstance(output, beam.pvalue.TaggedOutput):
      if output.tag == counts.DEAD_LETTER:
        dead.append((output.value["reason"], output.value["offset"]))
      else:
        totals[output.value[0]] += output.value[1]
    else:
      for row in output.to_pylist():
        values = {k: [v.decode("utf-8") for v in vs] for k, vs in row.items() if k != arrow.SPLIT_KEY}
        good.append(((values.get("text") or [""])[0], tuple(values.get("tokens", [])),
                     tuple(values.get("labels", []))))
  return good, dead, totals[counts.READ]


AWKWARD = {  # name → (file name, format, task, encoding, bytes): each mixes line ends and bad records
    "latin-1, lone CR, bz2": ("tagged.conll.bz2", "conll", "tag", "latin-1", bz2.compress(
        "naïve\tADJ\rcafé\tNOUN\r\rÜber\tADP\r\rlonely\r\r-DOCSTART- -X- O\r\rstraße NOUN\r".encode("latin-1"))),
    "BOM, CRLF, gzip, conllu": ("test.conllu.gz", "conllu", "tag", "utf-8", gzip.compress(
        codecs.BOM_UTF8 + CONLLU.replace("\n", "\r\n").encode("utf-8"))),
    "utf-16 jsonl, mixed ends": ("x.jsonl", "jsonl", "tag", "utf-16", (
        '{"tokens": ["a", "b"], "labels": ["X", "Y"]}\r\n\n{oops\r{"tokens": ["ü"], "labels": ["Z"]}').encode("utf-16")),
    "text, no final newline": ("x.txt.xz", "text", "lm", "utf-8", __import__("lzma").compress(
        b"first line\r\n\xff bad\n  \n\rlast")),
}


@pytest.mark.parametrize("name", list(AWKWARD))
def test_the_pipeline_and_the_trainer_read_an_awkward_file_alike(tmp_path, name):
  file_name, file_format, task, encoding, data = AWKWARD[name]
  path = tmp_path / file_name
  path.write_bytes(data)
  good, dead, read_count = pipeline_read(path, file_format, task, encoding)
  items = list(serving.read_items(serving.RawFile(str(path), file_format, encoding), task, need_labels=True))
  assert [(r.text, tuple(r.tokens), tuple(r.labels)) for r in (item.record for item in items) if r] == good and good
  assert sorted((item.problem, item.offset) for item in items if item.problem and not item.filtered) == sorted(dead)
  assert len([item for item in items if item.lines]) == read_count


def test_files_decompress_every_suffix_and_concatenated_streams():
  import lzma  # pylint: disable=g-import-not-at-top
  import zlib  # pylint: disable=g-import-not-at-top
  import zstandard  # pylint: disable=g-import-not-at-top
  text = b"one\ntwo\n" * 1000
  for suffix, compress in ((".gz", gzip.compress), (".bz2", bz2.compress), (".xz", lzma.compress),
                           (".zst", zstandard.ZstdCompressor().compress), (".deflate", zlib.compress)):
    halves = compress(text[:5000]) + compress(text[5000:])  # `cat a.gz b.gz`
    assert files.open_for_lines(io.BytesIO(halves), "x" + suffix.upper()).read() == text, suffix
