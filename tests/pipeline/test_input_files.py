"""Input files as users have them, through the real CLI: other encodings, usage errors
that name the path, and a file that changes under the job (issue 17).

Byte-order marks and `--input DIR` are in the corpora of test_bad_input_mix.py; a killed
or disk-full job is in test_preprocess.py.
"""

import codecs
import json
import os
import subprocess
import sys

import pytest

import contract
from tests.conftest import ROOT, call_cli, read_metadata
from tests.pipeline.beam_testing import run_bundle
from tests.pipeline.test_bad_input_mix import Good, decode_records, read_dead_letters, read_directly


def launch(*args, **popen_kwargs):
  """Starts the real CLI; returns the Popen (stdout and stderr as text pipes unless given)."""
  kwargs = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen_kwargs}
  return subprocess.Popen([sys.executable, "-m", "pipeline.preprocess", *map(str, args)], cwd=ROOT, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, **kwargs)


def test_utf16_with_its_bom_and_a_wrong_encoding_suggests_encoding(tmp_path):
  (tmp_path / "utf16").mkdir()
  good = [(["naïve", "東京"], ["ADJ", "PROPN"]), (["😀", "b"], ["SYM", "X"])]
  lines = [json.dumps({"tokens": t, "labels": l}, ensure_ascii=False) for t, l in good]
  lone_surrogate = b"\x00\xd8" + "x".encode("utf-16-le")  # a high surrogate without its low half
  data = (codecs.BOM_UTF16_LE + (lines[0] + "\n\n").encode("utf-16-le")
          + '{"tokens": ["'.encode("utf-16-le") + lone_surrogate + '"], "labels": ["X"]}\n'.encode("utf-16-le")
          + (lines[1] + "\n").encode("utf-16-le"))
  (tmp_path / "utf16" / "tagged.jsonl").write_bytes(data)
  latin1 = tmp_path / "latin1.txt"
  latin1.write_bytes("naïve café\nplain\nÜber straße\n".encode("latin-1"))
  utf16_out, latin1_out = tmp_path / "utf16_out", tmp_path / "latin1_out"
  utf16_run = call_cli("pipeline.preprocess", "--input", tmp_path / "utf16", "--output_dir", utf16_out, "--format",
                       "jsonl", "--task", "tag", "--no-lowercase", "--encoding", "utf-16", "--eval_fraction", "0",
                       "--max_error_fraction", "0.5", check=False)
  latin1_run = call_cli("pipeline.preprocess", "--input", latin1, "--output_dir", latin1_out, "--format", "text",
                        "--task", "lm", check=False)

  assert utf16_run.returncode == 0, utf16_run.stderr[-4000:]
  metadata = read_metadata(utf16_out)
  assert metadata["counts"] == {"read": 4, "written": 2, "filtered": {"empty": 1},
                                "dead_letter": {"undecodable": 1}, "truncated": 0, "truncated_chars": 0}
  assert metadata["options"]["encoding"] == "utf-16"
  assert sorted(decode_records(utf16_out, "tag")) == sorted(Good(tuple(t), tuple(l)) for t, l in good)
  (row,) = read_dead_letters(utf16_out)
  assert row["reason"] == "undecodable" and row["file"] == str(tmp_path / "utf16" / "tagged.jsonl")

  # Read as UTF-8, two of three Latin-1 lines do not decode: over the error budget
  # (--max_error_fraction), exit 2 without COMPLETED, and the one error line says what to try.
  assert latin1_run.returncode == 2
  last = latin1_run.stderr.strip().splitlines()[-1]
  assert last.startswith("error: 2 of 3 records are dead letters") and "--encoding" in last, last
  assert not (latin1_out / contract.COMPLETED_FILE).exists()
  assert read_metadata(latin1_out)["counts"]["dead_letter"] == {"undecodable": 2}  # written, for a look
  with pytest.raises(contract.DataDirError, match="COMPLETED"):
    contract.read_metadata(str(latin1_out))


def test_latin1_read_with_encoding_in_process(tmp_path):
  data = "naïve café\n\nÜber straße\n".encode("latin-1")
  good, dead, read = read_directly(tmp_path, b"\xef\xbb\xbf" + data, "text", "lm", encoding="latin-1")
  # Latin-1 has no byte-order mark: those three bytes are the characters "ï»¿".
  assert [g["text"] for g in good] == ["ï»¿naïve café", "Über straße"] and dead == [] and read == 3


@pytest.fixture
def read_only_dir(tmp_path):
  """A directory on a read-only file system, or None if none can be had here.

  As root, chmod does not stop a write, so a read-only tmpfs is mounted (if permitted).
  """
  path = tmp_path / "read_only"
  path.mkdir()
  if os.geteuid() != 0:
    path.chmod(0o555)
    yield path
    path.chmod(0o755)
    return
  mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)], capture_output=True)
  if mount.returncode != 0:
    yield None
    return
  try:
    yield path
  finally:
    subprocess.run(["umount", str(path)], check=True)


def unreadable_file(tmp_path):
  """A regular file that cannot be opened for reading (as root: a write-only /proc file)."""
  if os.geteuid() != 0:
    path = tmp_path / "secret.txt"
    path.write_text("a b\n")
    path.chmod(0)
    return str(path)
  path = "/proc/sys/vm/compact_memory"
  try:
    open(path, "rb").close()  # pylint: disable=consider-using-with
  except OSError:
    return path
  pytest.skip("no unreadable regular file here")


def test_usage_errors_name_the_path_in_one_line(tmp_path, read_only_dir):
  corpus = tmp_path / "c.txt"
  corpus.write_text("a b\n", encoding="utf-8")
  (tmp_path / "empty_dir").mkdir()
  (tmp_path / "empty_dir" / ".hidden").write_text("a b\n")  # hidden: not an input
  a_file = tmp_path / "a_file"
  a_file.write_text("")
  unreadable = unreadable_file(tmp_path)
  text_lm = ["--format", "text", "--task", "lm"]
  out = tmp_path / "out"
  cases = {  # name: (arguments, what the last line must hold)
      "typo": (["--input", corpus, "--output_dir", out, *text_lm, "--max_vocb", "5000"], ["--max_vocb", "--max_vocab"]),
      "empty_dir": (["--input", tmp_path / "empty_dir", "--output_dir", out, *text_lm], [str(tmp_path / "empty_dir")]),
      "no_match": (["--input", tmp_path / "nothing*.txt", "--output_dir", out, *text_lm], ["nothing*.txt"]),
      "unreadable": (["--input", corpus, "--input", unreadable, "--output_dir", out, *text_lm], [unreadable]),
      "output_is_a_file": (["--input", corpus, "--output_dir", a_file, *text_lm], [str(a_file), "is a file"]),
      "not_empty": (["--input", corpus, "--output_dir", tmp_path, *text_lm], [str(tmp_path), "--overwrite"]),
      "bad_encoding": (["--input", corpus, "--output_dir", out, *text_lm, "--encoding", "utf-9"], ["utf-9"]),
      "bad_format": (["--input", corpus, "--output_dir", out, "--format", "csv", "--task", "lm"], ["csv"]),
      "text_for_tag": (["--input", corpus, "--output_dir", out, "--format", "text", "--task", "tag"], ["--task lm"]),
  }
  if read_only_dir is not None:
    cases["read_only"] = (["--input", corpus, "--output_dir", read_only_dir / "out", *text_lm],
                          [str(read_only_dir / "out")])
  # --verbose is read from the command line when the CLI starts: a process of its own. The
  # other cases go through the CLI's entry function, run(argv), in this process meanwhile.
  verbose = launch("--input", corpus, "--output_dir", a_file, *text_lm, "--verbose")
  results = {}
  for name, (args, _) in cases.items():
    process = call_cli("pipeline.preprocess", *args, check=False)
    results[name] = (process.returncode, process.stderr)
  for name, (status, stderr) in results.items():
    last = stderr.strip().splitlines()[-1]
    assert status == 2, (name, stderr[-2000:])
    assert last.startswith("python -m pipeline.preprocess: error:"), (name, stderr[-2000:])
    assert all(part in last for part in cases[name][1]), (name, last)
    assert "Traceback" not in stderr, name
  _, stderr = verbose.communicate(timeout=900)
  assert verbose.returncode == 2 and "Traceback" in stderr and "is a file" in stderr.strip().splitlines()[-1]
  assert not out.exists()  # nothing was made for a refused job
  assert read_only_dir is not None or os.geteuid() != 0, "no read-only file system could be mounted"


def test_a_file_that_shrinks_under_the_job_is_an_error_naming_it(tmp_path):
  import logging  # pylint: disable=g-import-not-at-top
  corpus = tmp_path / "shrinks.txt"
  corpus.write_text("".join(f"line number {i}\n" for i in range(5000)), encoding="utf-8")
  out = tmp_path / "out"

  class ShrinkOnceListed(logging.Handler):
    """Cuts the file to half when the CLI logs that it has listed it, before it builds the job."""
    def emit(self, record):
      if record.getMessage().startswith("Reading 1 files"):
        os.truncate(corpus, corpus.stat().st_size // 2)

  shrink = ShrinkOnceListed()
  logging.getLogger().addHandler(shrink)
  try:
    process = call_cli("pipeline.preprocess", "--input", corpus, "--output_dir", out, "--format", "text", "--task",
                       "lm", check=False)
  finally:
    logging.getLogger().removeHandler(shrink)
  lines = process.stderr.strip().splitlines()
  assert corpus.stat().st_size < 5000 * len("line number 0\n")  # it was cut
  assert process.returncode == 1, lines[-20:]
  assert lines[-1].startswith("error: the job failed:") and str(corpus) in lines[-1], lines[-1]
  assert "changed while the job ran" in lines[-1] and "Traceback" not in process.stderr
  assert not (out / contract.COMPLETED_FILE).exists()


@pytest.mark.parametrize("change", ["shrunk", "removed"])
def test_a_range_past_the_end_of_a_shrunk_file_is_an_error_not_a_short_count(tmp_path, change):
  from pipeline import inputs as lines, read  # pylint: disable=g-import-not-at-top
  path = tmp_path / "a.txt"
  path.write_bytes(b"".join(b"line %d\n" % i for i in range(100)))
  listed = path.stat().st_size
  if change == "shrunk":
    os.truncate(path, listed // 3)
  else:
    path.unlink()
  ranges = [lines.FileRange(str(path), 0, -1, listed), lines.FileRange(str(path), 400, listed, listed)]
  if change == "shrunk":  # found by its size when opened or, size not given, by its end when read
    ranges.append(lines.FileRange(str(path), 400, listed))
  for file_format in ("text", "jsonl"):
    for file_range in ranges:
      with pytest.raises(lines.InputChangedError, match=str(path)):
        list(run_bundle(read.ReadLinesDoFn(file_format, "lm", 1000), [file_range]))
  with pytest.raises(lines.InputChangedError, match=str(path)):
    list(run_bundle(read.ReadConllDoFn("tag", 1000), [lines.FileRange(str(path), 0, -1, listed)]))
