r"""Public datasets as they ship: our tagger beside classical peers, and a language model with
sentence ends, each on its official train/dev/test files, measured in one run.

  tagger  ours (pipeline.preprocess, trainer.task with the defaults and --train_steps,
          trainer.evaluate --split test) beside a peer on the same train and test files
          (benchmarks/peers/taggers.py in the peers' venv: nltk's averaged perceptron for
          POS, sklearn-crfsuite with word-shape features for chunk tags; `--peer`)
  lm      a Penn-Treebank-style text (one sentence a line, pre-tokenized) through
          `--tokenizer whitespace`, the trainer's defaults, test perplexity with sentence ends,
          beside the interpolated bigram on the same ids (benchmarks/lm_baseline.py)

Nothing is downloaded: give the files. A UD treebank, e.g. UD_English-EWT
(https://github.com/UniversalDependencies/UD_English-EWT): en_ewt-ud-{train,dev,test}.conllu.
`lm --from_conllu` writes a PTB-style text of a treebank's sentences (lowercased, numbers
as N, punctuation dropped, the 10,000 most frequent train words, others <unk>: Mikolov's
recipe for PTB) when the PTB itself is not at hand.

Examples:
  python -m benchmarks.datasets tagger --train en_ewt-ud-train.conllu --dev en_ewt-ud-dev.conllu \
      --test en_ewt-ud-test.conllu --train_steps 6000
  python -m benchmarks.datasets tagger --format conll --train eng.train --dev eng.testa --test eng.testb \
      --peer crf --train_steps 6000
  python -m benchmarks.datasets lm --from_conllu en_ewt-ud-{train,dev,test}.conllu --train_steps 3000
"""

import collections
import json
import os
import re
import sys
from typing import List

from benchmarks import common

PEERS_PYTHON = os.path.join(common.REPO, ".venv-peers", "bin", "python")
PEER_SCRIPT = os.path.join(common.REPO, "benchmarks", "peers", "taggers.py")


def _evaluate(model_dir: str, data_dir: str, log_path: str) -> dict:
  out = log_path + ".json"
  common.run_timed(["sh", "-c", " ".join(common.python_module("trainer.evaluate", "--model_dir", model_dir,
                                                               "--data_dir", data_dir, "--split", "test"))
                    + f" > {out}"], log_path)
  with open(out) as f:
    return json.loads(f.read().strip().splitlines()[-1])


def ours(name: str, work: str, train: str, dev: str, test: str, file_format: str, task: str,
         train_steps: int, pipeline_flags=(), trainer_flags=()) -> dict:
  """pipeline.preprocess on the three files, trainer.task, and evaluate --split test."""
  data_dir, model_dir = os.path.join(work, "out", name), os.path.join(work, "models", name)
  logs = os.path.join(work, "logs")
  pipeline = common.run_timed(common.python_module(
      "pipeline.preprocess", "--input", train, "--eval_input", dev, "--test_input", test, "--output_dir", data_dir,
      "--format", file_format, "--task", task, "--overwrite", *pipeline_flags), os.path.join(logs, f"{name}.pipeline"))
  if os.path.exists(model_dir):
    import shutil  # pylint: disable=g-import-not-at-top
    shutil.rmtree(model_dir)
  training = common.run_timed(common.python_module(
      "trainer.task", "--data_dir", data_dir, "--model_dir", model_dir, "--cpu_replicas", 2, "--train_steps",
      train_steps, *trainer_flags), os.path.join(logs, f"{name}.train"))
  metrics = common.read_json(os.path.join(model_dir, "metrics.json"))
  test = _evaluate(model_dir, data_dir, os.path.join(logs, f"{name}.evaluate"))
  return {"pipeline_seconds": pipeline["seconds"], "train_seconds": training["seconds"],
          "train_steps": metrics["global_step"], "best_step": metrics.get("best_step"),
          "tokens_per_s": round(metrics.get("tokens_per_s", 0)), "dev": metrics.get("best", {}), "test": test}


def peer(method: str, train: str, test: str) -> dict:
  out = os.path.join(common.work_dir(), "logs", f"peer-{method}")
  timed = common.run_timed(["sh", "-c", f"{PEERS_PYTHON} {PEER_SCRIPT} {method} {train} {test} > {out}.json"], out)
  with open(out + ".json") as f:
    return {**json.loads(f.read().strip().splitlines()[-1]), "seconds": timed["seconds"]}


def measure_tagger(args) -> dict:
  work = common.work_dir(args.work_dir)
  results = {"machine": common.machine(), "files": [args.train, args.dev, args.test]}
  results["peer"] = peer(args.peer, args.train, args.test)
  results["ours"] = ours("tagger", work, args.train, args.dev, args.test, args.format, "tag", args.train_steps,
                         trainer_flags=args.trainer_flags.split())
  return results


def print_tagger(results: dict) -> None:
  peer_result, our = results["peer"], results["ours"]
  entity = "f1" in peer_result
  header = ["tagger", "test accuracy"] + (["test entity F1"] if entity else []) + ["training"]
  rows = [[peer_result["method"], f"{100 * peer_result['accuracy']:.2f}%"]
          + ([f"{100 * peer_result['f1']:.2f}"] if entity else []) + [f"{peer_result['train_seconds']:.0f} s"],
          [f"ours, {our['train_steps']} steps (export: step {our['best_step']})",
           f"{100 * our['test']['eval_accuracy']:.2f}%"]
          + ([f"{100 * our['test'].get('eval_f1', 0):.2f}"] if entity else []) + [f"{our['train_seconds']:.0f} s"]]
  common.report("Tagger on official splits", rows, header)


_NUMBER = re.compile(r"^[\d.,:/-]*\d[\d.,:/-]*$")


def ptb_style(paths: List[str], out_dir: str, vocab_size: int = 10_000) -> List[str]:
  """CoNLL-U train, dev, test → PTB-style text files (see the module docstring)."""
  def sentences(path):
    words = []
    with open(path, encoding="utf-8") as f:
      for line in f:
        if not line.strip():
          if words:
            yield words
          words = []
        elif not line.startswith("#"):
          columns = line.rstrip("\n").split("\t")
          if "-" in columns[0] or "." in columns[0] or columns[3] in ("PUNCT", "SYM"):
            continue
          form = columns[1].lower().replace(" ", "")
          words.append("N" if _NUMBER.match(form) else form)
    if words:
      yield words

  splits = [list(sentences(path)) for path in paths]
  counts = collections.Counter(word for words in splits[0] for word in words)
  keep = {word for word, _ in counts.most_common(vocab_size - 1)}
  os.makedirs(out_dir, exist_ok=True)
  outputs = []
  for name, split in zip(("train", "valid", "test"), splits):
    outputs.append(os.path.join(out_dir, f"ptb_style.{name}.txt"))
    with open(outputs[-1], "w", encoding="utf-8") as f:
      f.writelines(" ".join(w if w in keep else "<unk>" for w in words) + "\n" for words in split)
  return outputs


def measure_lm(args) -> dict:
  work = common.work_dir(args.work_dir)
  files = ptb_style(args.from_conllu, os.path.join(work, "ptb_style")) if args.from_conllu else args.files
  results = {"machine": common.machine(), "files": files}
  results["ours"] = ours("lm", work, *files, "text", "lm", args.train_steps, ["--tokenizer", "whitespace"],
                         args.trainer_flags.split())
  from benchmarks import lm_baseline  # pylint: disable=g-import-not-at-top
  results["bigram"] = lm_baseline.bigram_perplexity(os.path.join(work, "out", "lm"), split="test")
  return results


def print_lm(results: dict) -> None:
  our, bigram = results["ours"], results["bigram"]
  common.report("Language model with sentence ends, test split", [
      ["interpolated bigram", bigram["bigram_perplexity"], "-"],
      [f"ours, {our['train_steps']} steps", round(our["test"]["eval_perplexity"], 2), f"{our['train_seconds']:.0f} s"],
  ], ["model", "test perplexity (</s> counted)", "training"])


FLAGS = ([["--work_dir"], {"default": None, "help": "where outputs and logs go (default /tmp/rnn_bench)"}],
         [["--train_steps"], {"type": int, "default": 3000}],
         [["--trainer_flags"], {"default": "", "help": "more trainer.task flags, one string"}])
COMMANDS = {
    "tagger": (measure_tagger, print_tagger, "ours beside a classical tagger on a dataset's official splits", FLAGS + (
        [["--train"], {"required": True}], [["--dev"], {"required": True}], [["--test"], {"required": True}],
        [["--format"], {"default": "conllu", "choices": ("conllu", "conll")}],
        [["--peer"], {"default": "perceptron", "choices": ("perceptron", "crf")}])),
    "lm": (measure_lm, print_lm, "a PTB-style LM with sentence ends", FLAGS + (
        [["--files"], {"nargs": 3, "metavar": ("TRAIN", "VALID", "TEST")}],
        [["--from_conllu"], {"nargs": 3, "metavar": ("TRAIN", "DEV", "TEST")}])),
}


if __name__ == "__main__":
  sys.exit(common.main(__doc__, COMMANDS))
