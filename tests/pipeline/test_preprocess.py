"""End-to-end: the real `python -m pipeline.preprocess` on tiny corpora, records parsed back."""

import collections
import json
import os
import pathlib
import re
import unicodedata

import pytest

import contract
from tests.conftest import TAGGED, preprocess, read_metadata, read_records, truncated_chars, write_conll
from tests.pipeline.conftest import (CLASSIFY_CORPUS, CLASSIFY_GOOD, CLASSIFY_LINES, SENTENCES, WORDPIECE_CORPUS,
                                    WORDPIECE_OPTIONS)


def vocab(output_dir, name="vocab.txt"):
  return contract.read_vocab(os.path.join(output_dir, name))


def reference_tokenize(text, lowercase=False, split_punctuation=True):
  """The documented tokenization, written independently of the TF graph: separators are
  Unicode Z* and Cc characters; each punctuation (P*) or symbol (S*) character is a token
  (with `split_punctuation`, the word tokenizer; without, --tokenizer whitespace)."""
  tokens, current = [], []
  for char in text.lower() if lowercase else text:
    category = unicodedata.category(char)
    if category.startswith("Z") or category == "Cc":
      tokens.append("".join(current))
      current = []
    elif category[0] in "PS" and split_punctuation:
      tokens += ["".join(current), char]
      current = []
    else:
      current.append(char)
  tokens.append("".join(current))
  return [t for t in tokens if t]


def decode(records, token_vocab, label_vocab=None):
  out = []
  for r in records:
    tokens = tuple(token_vocab[i] for i in r["tokens"])
    labels = tuple(label_vocab[i] for i in r["labels"]) if label_vocab else None
    out.append((tokens, labels))
  return out


def test_conll_tag_round_trip(tmp_path):
  corpus = tmp_path / "train.conll"
  write_conll(corpus, TAGGED)
  out = tmp_path / "out"
  preprocess(corpus, out, "conll", "tag", "--eval_fraction", "0.3", "--max_token_chars", "3", "--no-lowercase")

  metadata = read_metadata(out)
  assert os.path.exists(out / "COMPLETED")
  train, evaluation = read_records(out, "train"), read_records(out, "eval")
  assert len(train) + len(evaluation) == len(TAGGED)
  assert metadata["splits"]["train"]["examples"] == len(train)
  assert metadata["splits"]["eval"]["examples"] == len(evaluation)
  for record in train + evaluation:
    assert record["length"] == len(record["tokens"]) == len(record["labels"]) >= 1
    assert (record["tokens"] != contract.PAD_ID).all()
    assert (record["labels"] != contract.PAD_ID).all()
  # Vocabularies are learned on train only: eval tokens unseen in train map to <unk>.
  token_vocab, label_vocab = vocab(out), vocab(out, "labels.txt")
  assert token_vocab[:2] == ["<pad>", "<unk>"] and label_vocab[:2] == ["<pad>", "<unk>"]
  train_tokens = {t for tokens, _ in decode(train, token_vocab, label_vocab) for t in tokens}
  assert set(token_vocab[2:]) == train_tokens
  expected = collections.Counter((tuple(t for t, _ in s), tuple(l for _, l in s)) for s in TAGGED)
  got = collections.Counter(decode(train, token_vocab, label_vocab))
  got_eval = decode(evaluation, token_vocab, label_vocab)
  for tokens, labels in got_eval:  # eval decodes with <unk> for tokens unseen in train
    match = [e for e in expected if len(e[0]) == len(tokens) and all(
        a == b or (a == "<unk>" and b not in train_tokens) for a, b in zip(tokens, e[0]))]
    assert match, tokens
    got[match[0]] += 1
  assert got == expected
  counts = metadata["counts"]
  assert counts["read"] == counts["written"] == len(TAGGED)

  # Tag records carry each token's characters, cut to --max_token_chars 3 (first 2, last 1),
  # as ids of chars.txt: learned on train's kept characters, unseen ones <unk> in eval.
  char_vocab = vocab(out, "chars.txt")
  assert metadata["chars"] == {"file": "chars.txt", "size": len(char_vocab), "pad_id": 0, "unk_id": 1,
                               "max_token_chars": 3}
  assert metadata["features"]["sequence_values"] == {"chars": "int64"} and metadata["options"]["chars"] is True
  assert counts["truncated_chars"] == sum(len(token) > 3 for sentence in TAGGED for token, _ in sentence)
  spelled = {tuple(truncated_chars(t, 3) for t, _ in s) for s in TAGGED}
  train_chars = collections.Counter()
  for record in train:
    assert len(record["chars"]) == record["length"] and all(record["chars"])
    words = tuple("".join(char_vocab[i] for i in step) for step in record["chars"])
    assert words in spelled
    train_chars.update(char for word in words for char in word)
  assert set(char_vocab[2:]) == set(train_chars) and len(char_vocab) == len(train_chars) + 2
  assert char_vocab[2:] == sorted(train_chars, key=lambda c: (-train_chars[c], [-b for b in c.encode()]))
  for record in evaluation:
    words = ["".join(char_vocab[i] if i > 1 else "?" for i in step) for step in record["chars"]]
    assert any(len(words) == len(s) and all(w == t or (w.count("?") and len(w) == len(t)) for w, t in zip(words, s))
               for s in spelled), words
  with open(out / "vocab_counts.txt") as f:  # train counts per vocab.txt line; <unk> has none in train
    token_counts = [int(line) for line in f]
  train_tokens = collections.Counter(t for tokens, _ in decode(train, token_vocab, label_vocab) for t in tokens)
  assert token_counts == [0, 0] + [train_tokens[t] for t in token_vocab[2:]]
  assert metadata["vocab"]["counts_file"] == "vocab_counts.txt"


@pytest.mark.parametrize("tokenizer", ["word", "whitespace"])
def test_text_lm_round_trip_with_documented_tokenization(tmp_path, tokenizer):
  lines = ["Hello, World! It's 3.5$ today.", "", "   ", "naïve café\tCAFÉ — ok?", "東京 😀😀 שלום",
           "tabs\tand\x0bvertical\u2028separators\x85nel", "x" * 3,
           "the <unk> index rose N N % to $ N @-@ a record"]  # Penn Treebank as the field ships it
  corpus = tmp_path / "corpus.txt"
  corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
  out = tmp_path / "out"
  preprocess(corpus, out, "text", "lm", "--lowercase", "--eval_fraction", "0", "--tokenizer", tokenizer)

  records = read_records(out, "train")
  token_vocab = vocab(out)
  got = collections.Counter(tokens for tokens, _ in decode(records, token_vocab))
  expected = collections.Counter(tuple(reference_tokenize(l, lowercase=True, split_punctuation=tokenizer == "word"))
                                 for l in lines if l.strip())
  assert got == expected
  if tokenizer == "whitespace":
    assert {"<unk>", "@-@", "n", "$", "3.5$", "hello,"} <= set(token_vocab)
  assert token_vocab[:3] == ["<pad>", "<unk>", "</s>"]
  assert all(not any(c in t for c in "\n\t\r ") for t in token_vocab)
  counts = read_metadata(out)["counts"]
  assert counts["filtered"] == {"empty": 2}
  assert counts["read"] == len(lines)


def test_bad_input_is_counted_and_dead_lettered(classify_run):
  out = pathlib.Path(classify_run)
  counts = read_metadata(out)["counts"]
  assert counts["read"] == len(CLASSIFY_LINES)
  assert counts["written"] == len(CLASSIFY_GOOD)
  assert counts["filtered"] == {"empty": 3}
  assert counts["dead_letter"] == {
      "bad_json": 1, "not_an_object": 1, "missing_text": 1, "missing_label": 1, "wrong_type_text": 1,
      "bad_token": 1, "wrong_type_label": 1, "undecodable": 1, "nul_byte": 1}
  with open(out / "errors" / "dead_letter.jsonl", encoding="utf-8") as f:
    rows = [json.loads(line) for line in f]
  assert len(rows) == 9
  assert all(row["file"] == str(out.parent / CLASSIFY_CORPUS) and row["reason"] and "record" in row for row in rows)
  assert {row["record"] for row in rows if row["reason"] == "bad_json"} == {"{not json"}
  records = read_records(out, "train") + read_records(out, "eval")
  labels = vocab(out, "labels.txt")
  assert sorted(labels[r["label"]] for r in records) == sorted(str(g["label"]) for g in CLASSIFY_GOOD)


# Usage errors (exit 2, one line): test_input_files.py's test_usage_errors_name_the_path_in_one_line;
# the error budget exceeded (exit 2, no COMPLETED): its UTF-16 and Latin-1 test.


def test_overwrite_refuses_foreign_files(tmp_path):
  corpus = tmp_path / "c.txt"
  corpus.write_text("a b\n", encoding="utf-8")
  out = tmp_path / "out"
  out.mkdir()
  (out / "precious.txt").write_text("keep me")
  process = preprocess(corpus, out, "text", "lm", "--overwrite", check=False)
  assert process.returncode == 2 and "precious.txt" in process.stderr
  assert (out / "precious.txt").read_text() == "keep me"


def shard_bytes(output_dir):
  names = sorted(n for n in os.listdir(output_dir) if ".tfrecord" in n)
  return {n: (output_dir / n).read_bytes() for n in names}


def comparable_metadata(output_dir):
  metadata = read_metadata(output_dir)
  del metadata["created"]
  return metadata


@pytest.mark.long
def test_deterministic_across_processes_and_overwrite(wordpiece_tag_run, tmp_path):
  """The wordpiece run (whose learner runs in the workers too) again, by 2 worker processes,
  with --overwrite over a stale run of more shards: the same bytes. (The word tokenizer's
  output across processes: test_scale's worker-pool test.)"""
  import shutil  # pylint: disable=g-import-not-at-top
  first = pathlib.Path(wordpiece_tag_run)
  second = tmp_path / "second"
  # A stale run: the files of a complete one, its train shards under the names of 5 shards.
  shutil.copytree(first, second)
  stale = read_metadata(second)
  for index, shard in enumerate(stale["splits"]["train"]["shards"]):
    os.rename(second / shard["file"], second / contract.shard_name("train", index, 5, stale["options"]["compression"]))
  for index in range(len(stale["splits"]["train"]["shards"]), 5):
    (second / contract.shard_name("train", index, 5, stale["options"]["compression"])).write_bytes(b"")
  preprocess(first.parent / WORDPIECE_CORPUS, second, "conll", "tag", *WORDPIECE_OPTIONS, "--overwrite",
             "--direct_num_workers", "2", "--direct_running_mode", "multi_processing")
  assert shard_bytes(first) == shard_bytes(second)
  assert len(shard_bytes(first)) == 4  # 3 train + 1 eval, no stale shard
  assert comparable_metadata(first) == comparable_metadata(second)
  assert comparable_metadata(first)["tokenizer"]["type"] == "wordpiece"
  for name in ["vocab.txt"] + [os.path.join(contract.TRANSFORM_FN_DIR, "assets", n)
                               for n in sorted(os.listdir(first / contract.TRANSFORM_FN_DIR / "assets"))]:
    assert (first / name).read_bytes() == (second / name).read_bytes(), name
  assert not os.path.exists(second / ".tmp")
  records = read_records(first, "train") + read_records(first, "eval")
  assert len(records) == len(SENTENCES)


def test_gzip_globs_truncation_and_vocabulary_limits(tmp_path):
  import gzip  # pylint: disable=g-import-not-at-top
  (tmp_path / "in").mkdir()
  with gzip.open(tmp_path / "in" / "a.jsonl.gz", "wt", encoding="utf-8") as f:
    f.write(json.dumps({"tokens": ["a", "b", "a", "c", "a", "b", "d", "e"], "labels": list("XYXYXYXY")}) + "\n")
    f.write(json.dumps({"tokens": ["e\u0301t\u00e9", "a"], "labels": ["X", "Y"]}) + "\n")  # combining mark
  (tmp_path / "b.jsonl").write_text(
      json.dumps({"tokens": ["a", "b"], "labels": ["X"]}) + "\n"  # label_count_mismatch
      + json.dumps({"tokens": ["z"]}) + "\n",  # missing_labels
      encoding="utf-8")
  out = tmp_path / "out"
  preprocess([str(tmp_path / "in" / "*.gz"), str(tmp_path / "b.jsonl")], out, "jsonl", "tag",
             "--max_length", "6", "--max_vocab", "4", "--min_count", "2", "--eval_fraction", "0",
             "--max_error_fraction", "0.6")
  metadata = read_metadata(out)
  assert metadata["counts"] == {"read": 4, "written": 2, "filtered": {}, "truncated": 1, "truncated_chars": 0,
                                "dead_letter": {"label_count_mismatch": 1, "missing_labels": 1}}
  # A character is a code point: the combining mark is one of its own.
  etude = next(r for r in read_records(out, "train") if len(r["tokens"]) == 2)["chars"][0]
  assert ["".join(vocab(out, "chars.txt")[i] for i in [c]) for c in etude] == ["e", "\u0301", "t", "\u00e9"]
  # Counted on the truncated train data: a x4, b x2 (c, d, e once; e\u0301t\u00e9 once).
  assert vocab(out) == ["<pad>", "<unk>", "a", "b"]
  records = sorted(read_records(out, "train"), key=lambda r: -len(r["tokens"]))
  assert records[0]["length"] == 6 and list(records[0]["tokens"]) == [2, 3, 2, 1, 2, 3]
  assert list(records[1]["tokens"]) == [1, 2]
  assert [m["file"] for m in metadata["inputs"]] == sorted([str(tmp_path / "in" / "a.jsonl.gz"),
                                                           str(tmp_path / "b.jsonl")])


def output_files(output_dir):
  """Every file of an OUTPUT_DIR but metadata.json, COMPLETED and transform_fn/ (which
  hold times and temporary paths), by path: what a rerun must reproduce byte for byte."""
  files = {}
  for root, _, names in os.walk(output_dir):
    for name in names:
      path = os.path.relpath(os.path.join(root, name), output_dir)
      if not path.startswith(("transform_fn", "metadata.json", "COMPLETED")):
        with open(os.path.join(root, name), "rb") as f:
          files[path] = f.read()
  return files


def assert_no_incomplete_shard(output_dir, clean):
  """A file under a final shard name is the whole shard the clean run wrote."""
  for name, data in shard_bytes(output_dir).items():
    assert data == clean[name], f"{name} is incomplete"


@pytest.mark.long
def test_killed_or_disk_full_job_leaves_no_completed_and_overwrite_reproduces_the_clean_run(
    tmp_path, demo_tag_data):
  import resource  # pylint: disable=g-import-not-at-top
  import signal  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from pipeline import write  # pylint: disable=g-import-not-at-top
  from tests.conftest import ROOT, kill_when  # pylint: disable=g-import-not-at-top
  clean = pathlib.Path(demo_tag_data)  # the same corpus and options, run once
  clean_shards = shard_bytes(clean)
  killed = tmp_path / "killed"
  args = [sys.executable, "-m", "pipeline.preprocess", "--input", os.path.join(ROOT, "data", "demo", "tagged.conll"),
          "--output_dir", str(killed), "--format", "conll", "--task", "tag", "--eval_fraction", "0.1"]
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}

  # SIGKILL in the write stage: as soon as the first runs of encoded records are written.
  process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  kill_when(process, lambda: (killed / write.TEMP_DIR / write.RUNS_DIR).exists())
  assert not (killed / contract.COMPLETED_FILE).exists()
  assert_no_incomplete_shard(killed, clean_shards)
  with pytest.raises(contract.DataDirError):
    contract.read_metadata(str(killed))

  # The disk fills up while shards are written: a file-size limit smaller than the train
  # shard (SIGXFSZ ignored, so a write fails with EFBIG instead of killing the process),
  # on this process while the CLI runs in it.
  soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
  on_sigxfsz = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
  resource.setrlimit(resource.RLIMIT_FSIZE, (max(len(data) for data in clean_shards.values()) // 2, hard))
  try:
    full = preprocess(os.path.join(ROOT, "data", "demo", "tagged.conll"), killed, "conll", "tag", "--eval_fraction",
                      "0.1", "--overwrite", check=False)
  finally:
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    signal.signal(signal.SIGXFSZ, on_sigxfsz)
  assert full.returncode == 1, full.stderr[-3000:]
  last = full.stderr.strip().splitlines()[-1]
  assert last.startswith("error: the job failed:") and "Traceback" not in full.stderr, full.stderr[-3000:]
  assert not (killed / contract.COMPLETED_FILE).exists()
  assert_no_incomplete_shard(killed, clean_shards)

  preprocess(os.path.join(ROOT, "data", "demo", "tagged.conll"), killed, "conll", "tag", "--eval_fraction", "0.1",
             "--overwrite")
  assert output_files(killed) == output_files(clean)
  assert sorted(os.listdir(killed)) == sorted(os.listdir(clean))


def test_every_config_field_is_a_flag_with_its_default():
  import dataclasses  # pylint: disable=g-import-not-at-top
  from pipeline import config, preprocess as preprocess_lib  # pylint: disable=g-import-not-at-top
  required = ["--input", "a", "--output_dir", "o", "--format", "text", "--task", "lm"]
  parsed = config.from_flags(preprocess_lib.build_parser().parse_args(required))
  assert parsed == config.PipelineConfig(inputs=("a",), output_dir="o", file_format="text", task="lm")
  flags = preprocess_lib.build_parser().parse_args(required + ["--max_vocab", "7", "--lowercase", "--encoding", "latin-1"])
  assert dataclasses.replace(parsed, max_vocab=7, lowercase=True, encoding="latin-1") == config.from_flags(flags)
  # How records reach their shards does not change them: metadata.json does not record it.
  shuffled = config.from_flags(preprocess_lib.build_parser().parse_args(required + ["--shard_writer", "shuffle"]))
  assert shuffled.shard_writer == "shuffle" and shuffled.options() == parsed.options()
  assert "shard_writer" not in parsed.options()


def test_beam_options_pass_and_a_typo_is_named_with_the_closest_option():
  from pipeline import preprocess as preprocess_lib  # pylint: disable=g-import-not-at-top
  parser = preprocess_lib.build_parser()
  preprocess_lib.check_pipeline_args([
      "--runner", "DirectRunner", "--direct_num_workers", "2", "--direct_running_mode", "multi_processing",
      "--job_endpoint", "embed", "--environment_type", "LOOPBACK", "--environment_config", "x", "--project", "p",
      "--region", "r", "--temp_location", "gs://b/tmp", "--setup_file", "./setup.py", "--flink_master", "host:8081",
      "--experiments", "a", "--experiments=b"], parser)
  for args, message in [(["--max_vocb", "5000"], "unknown option --max_vocb (did you mean --max_vocab?)"),
                        (["--runer=X"], "unknown option --runer (did you mean --runner?)"),
                        (["--zzzz"], "unknown option --zzzz;"), (["stray"], "unexpected argument 'stray'")]:
    with pytest.raises(preprocess_lib.UsageError, match=re.escape(message)):
      preprocess_lib.check_pipeline_args(args, parser)


def test_lowercase_lowercases_the_vocabulary_but_not_the_characters(tmp_path):
  (tmp_path / "a.jsonl").write_text(
      json.dumps({"tokens": ["The", "THE", "the", "Étude"], "labels": list("WXYZ")}) + "\n", encoding="utf-8")
  out = tmp_path / "out"
  preprocess(tmp_path / "a.jsonl", out, "jsonl", "tag", "--lowercase", "--eval_fraction", "0")
  assert vocab(out)[2:] == ["the", "étude"]  # three spellings, one word
  (record,) = read_records(out, "train")
  chars = vocab(out, "chars.txt")
  assert ["".join(chars[i] for i in step) for step in record["chars"]] == ["The", "THE", "the", "Étude"]
