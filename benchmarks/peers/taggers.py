"""Classical taggers to measure ours against, run in the peers' own venv (never the project's).

    .venv-peers/bin/python benchmarks/peers/taggers.py perceptron TRAIN TEST [--label_column 4]
    .venv-peers/bin/python benchmarks/peers/taggers.py crf TRAIN TEST [--dev DEV]

Reads CoNLL-U (FORM and a label column) or CoNLL (first and last column; -DOCSTART- and
blank lines between sentences) itself, with no code of the project's, and prints one JSON
line: accuracy (per token) and, for chunk tags, seqeval's entity precision/recall/F1
(conlleval's rules), with the training seconds.

- perceptron: nltk's averaged perceptron tagger (its own word, affix and context
  features), 5 iterations, as `nltk.tag.perceptron.PerceptronTagger().train` does.
- crf: sklearn-crfsuite with the usual word-shape features (lowercase word, prefixes and
  suffixes, case, digits, the words around it), L-BFGS with c1=0.1, c2=0.1, 100 iterations.
"""

import argparse
import json
import random
import sys
import time


def read_sentences(path, label_column):
  """[(words, labels)] of a CoNLL-U (.conllu) or CoNLL file."""
  conllu = ".conllu" in path
  sentences, words, labels = [], [], []
  with open(path, encoding="utf-8") as f:
    for line in f:
      line = line.rstrip("\r\n")
      if not line.strip() or line.startswith("-DOCSTART-") or (conllu and line.startswith("#")):
        if words:
          sentences.append((words, labels))
          words, labels = [], []
        continue
      columns = line.split("\t") if conllu or "\t" in line else line.split()
      if conllu and ("-" in columns[0] or "." in columns[0]):
        continue
      words.append(columns[1] if conllu else columns[0])
      labels.append(columns[label_column - 1] if label_column else columns[-1])
  if words:
    sentences.append((words, labels))
  return sentences


def word_features(words, i):
  word = words[i]
  features = {"bias": 1.0, "lower": word.lower(), "suffix3": word[-3:], "suffix2": word[-2:], "prefix3": word[:3],
              "upper": word.isupper(), "title": word.istitle(), "digit": word.isdigit(),
              "shape": "".join("X" if c.isupper() else "x" if c.islower() else "d" if c.isdigit() else c
                               for c in word)[:8]}
  for offset in (-2, -1, 1, 2):
    j = i + offset
    if 0 <= j < len(words):
      features.update({f"{offset}:lower": words[j].lower(), f"{offset}:title": words[j].istitle(),
                       f"{offset}:upper": words[j].isupper(), f"{offset}:suffix3": words[j][-3:]})
    else:
      features[f"{offset}:edge"] = True
  return features


def train_and_tag(method, train, test):
  if method == "perceptron":
    from nltk.tag.perceptron import PerceptronTagger  # pylint: disable=import-outside-toplevel
    tagger = PerceptronTagger(load=False)
    random.seed(0)
    begin = time.time()
    tagger.train([list(zip(words, labels)) for words, labels in train], nr_iter=5)
    seconds = time.time() - begin
    return [[label for _, label in tagger.tag(words)] for words, _ in test], seconds
  import sklearn_crfsuite  # pylint: disable=import-outside-toplevel
  crf = sklearn_crfsuite.CRF(algorithm="lbfgs", c1=0.1, c2=0.1, max_iterations=100, all_possible_transitions=True)
  begin = time.time()
  crf.fit([[word_features(words, i) for i in range(len(words))] for words, _ in train],
          [labels for _, labels in train])
  seconds = time.time() - begin
  return crf.predict([[word_features(words, i) for i in range(len(words))] for words, _ in test]), seconds


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("method", choices=("perceptron", "crf"))
  parser.add_argument("train")
  parser.add_argument("test")
  parser.add_argument("--label_column", type=int, default=None, help="1-based (default: UPOS for .conllu, else last)")
  args = parser.parse_args(argv)
  label_column = args.label_column or (4 if ".conllu" in args.train else None)
  train, test = read_sentences(args.train, label_column), read_sentences(args.test, label_column)
  predicted, seconds = train_and_tag(args.method, train, test)
  gold = [labels for _, labels in test]
  pairs = [(g, p) for gs, ps in zip(gold, predicted) for g, p in zip(gs, ps)]
  result = {"method": args.method, "accuracy": sum(g == p for g, p in pairs) / len(pairs),
            "train_seconds": round(seconds, 1), "train_sentences": len(train), "test_tokens": len(pairs)}
  if all(label == "O" or label[:2] in ("B-", "I-", "E-", "S-") for labels in gold for label in labels):
    from seqeval.metrics import f1_score, precision_score, recall_score  # pylint: disable=import-outside-toplevel
    result.update(precision=precision_score(gold, predicted), recall=recall_score(gold, predicted),
                  f1=f1_score(gold, predicted))
  print(json.dumps(result))
  return 0


if __name__ == "__main__":
  sys.exit(main())
