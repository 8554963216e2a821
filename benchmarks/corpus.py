r"""Assembles a prose corpus offline, one sentence per line, to a target size.

Prose from documentation files and docstrings under the virtualenv and from /usr/share/doc,
split into sentences, filtered (no code, tables or URLs), deduplicated, then shuffled and
repeated with a fixed seed up to the size. Nothing is downloaded.

Example:
  python -m benchmarks.corpus --corpus_mb 100 --out /tmp/rnn_bench/corpora/prose_100mb.txt
"""

import ast
import gzip
import hashlib
import logging
import os
import random
import re
import sys
import warnings
from typing import Iterable, Iterator, List, Optional

from benchmarks import common

DOC_SUFFIXES = (".md", ".rst", ".txt")
SEED = 20240611
# Longer "sentences" are run-on lists (changelogs, license tables), not prose; they
# would all be cut at the pipeline's --max_length anyway.
MAX_SENTENCE_CHARS = 3000

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z])")
_MARKUP_PREFIX = re.compile(r"^(\s*([#*>|+-]+|\d+[.)]|\.\.)\s+)+")
_URL = re.compile(r"\w+://")


def _read_text(path: str) -> Optional[str]:
  try:
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
      raw = f.read(8 << 20)
  except (OSError, EOFError):
    return None
  return None if b"\x00" in raw[:4096] else raw.decode("utf-8", errors="replace")  # NUL: binary


def _docstrings(path: str) -> Iterator[str]:
  try:
    with open(path, "rb") as f:
      with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escape sequences in third-party code
        tree = ast.parse(f.read())
  except (SyntaxError, ValueError, OSError, RecursionError, MemoryError):
    return
  for node in ast.walk(tree):
    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
      yield ast.get_docstring(node, clean=True)  # None if it has none


def source_files(venv: str, doc_root: str = "/usr/share/doc") -> List[str]:
  """Every file that may hold prose, in a stable order."""
  files = []
  for root in (venv, doc_root):
    for directory, dirs, names in os.walk(root):
      dirs.sort()
      for name in sorted(names):
        path = os.path.join(directory, name)
        if root == doc_root or name.endswith(DOC_SUFFIXES + (".py",)) or name == "METADATA":
          if os.path.isfile(path) and not os.path.islink(path):
            files.append(path)
  return files


def paragraphs(text: str) -> Iterator[str]:
  """Blank-line separated blocks, each joined into one line."""
  block: List[str] = []
  for line in text.splitlines():
    line = line.strip()
    if line:
      block.append(_MARKUP_PREFIX.sub("", line))
    elif block:
      yield " ".join(block)
      block = []
  if block:
    yield " ".join(block)


def is_prose(sentence: str) -> bool:
  """Heuristics that keep sentences and drop code, tables, hashes and link lists."""
  words = sentence.split()
  if len(sentence) > MAX_SENTENCE_CHARS or len(words) < 3 or max(len(w) for w in words) > 30 or _URL.search(sentence):
    return False
  letters = sum(c.isalpha() for c in sentence)
  return (letters + sentence.count(" ")) / len(sentence) >= 0.85 and letters / max(len(words), 1) >= 3


def sentences(text: str) -> Iterator[str]:
  for paragraph in paragraphs(text):
    for sentence in _SENTENCE_END.split(paragraph):
      sentence = " ".join(sentence.split())
      if sentence and is_prose(sentence):
        yield sentence


def sentence_pool(files: Iterable[str]) -> List[str]:
  """Unique prose sentences of all files, in first-seen order."""
  seen, pool = set(), []
  for path in files:
    for text in _docstrings(path) if path.endswith(".py") else [_read_text(path)]:
      for sentence in sentences(text or ""):
        key = hashlib.blake2b(sentence.encode("utf-8"), digest_size=8).digest()
        if key not in seen:
          seen.add(key)
          pool.append(sentence)
  return pool


def write_corpus(pool: List[str], target_bytes: int, path: str) -> dict:
  """Shuffled rounds of the pool (a fresh fixed-seed shuffle each round) up to target_bytes."""
  rng = random.Random(SEED)
  written = lines = rounds = 0
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  temp_path = path + ".part"
  with open(temp_path, "w", encoding="utf-8") as f:
    while written < target_bytes:
      order = list(range(len(pool)))
      rng.shuffle(order)
      rounds += 1
      for index in order:
        line = pool[index] + "\n"
        f.write(line)
        written += len(line.encode("utf-8"))
        lines += 1
        if written >= target_bytes:
          break
  os.replace(temp_path, path)
  return {"path": path, "bytes": written, "lines": lines, "unique_sentences": len(pool), "rounds": rounds}


def build(corpus_mb: float, out: Optional[str] = None, venv: Optional[str] = None) -> dict:
  """Writes (or reuses) the corpus of `corpus_mb` MB; returns its description."""
  out = out or os.path.join(common.work_dir(), "corpora", f"prose_{corpus_mb:g}mb.txt")
  target = int(corpus_mb * 1e6)
  if os.path.exists(out) and abs(os.path.getsize(out) - target) < 1000:
    with open(out, "rb") as f:
      lines = sum(1 for _ in f)
    return {"path": out, "bytes": os.path.getsize(out), "lines": lines, "reused": True}
  venv = venv or os.path.join(common.REPO, ".venv")
  pool_path = os.path.join(common.work_dir(), "corpora", "pool.txt")
  if os.path.exists(pool_path):  # the pool depends only on the machine's files
    with open(pool_path, encoding="utf-8") as f:
      pool = f.read().split("\n")[:-1]
  else:
    logging.info("Collecting prose from %s and /usr/share/doc", venv)
    pool = sentence_pool(source_files(venv))
    os.makedirs(os.path.dirname(pool_path), exist_ok=True)
    with open(pool_path, "w", encoding="utf-8") as f:
      f.write("".join(s + "\n" for s in pool))
  result = write_corpus(pool, target, out)
  logging.info("Corpus %s: %d bytes, %d lines from %d unique sentences", out, result["bytes"],
               result["lines"], result["unique_sentences"])
  return result


def main(argv=None):
  parser = common.parser(__doc__)
  parser.add_argument("--corpus_mb", type=float, default=100)
  parser.add_argument("--out", default=None, help="default: $BENCH_WORK_DIR/corpora/prose_<MB>mb.txt")
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
  print(build(args.corpus_mb, args.out))


if __name__ == "__main__":
  sys.exit(main())
