"""Reference tools (seqeval, nltk, sklearn-crfsuite) as oracles, run in their own venv.

`make setup` builds `.venv-peers` from `benchmarks/peers.txt`; those packages never enter
the project's venv. A test hands a peer its input as JSON on stdin and reads JSON back.
"""

import json
import os
import subprocess

import pytest

from tests.conftest import ROOT

PEERS_PYTHON = os.path.join(ROOT, ".venv-peers", "bin", "python")


def run_peer(script: str, payload):
  """Runs `script` (Python source that reads JSON from stdin and prints JSON) in the peers
  venv; returns what it printed, parsed. Skips the test when the venv is not built."""
  if not os.access(PEERS_PYTHON, os.X_OK):
    pytest.skip("no .venv-peers: run `make setup` (it builds it from benchmarks/peers.txt)")
  process = subprocess.run([PEERS_PYTHON, "-c", script], input=json.dumps(payload), capture_output=True,
                           text=True, timeout=300, cwd=ROOT)
  assert process.returncode == 0, process.stderr[-4000:]
  return json.loads(process.stdout)


# seqeval in its default mode (conlleval's rules): per case, micro precision, recall and F1
# and the gold and predicted entities. Input: [[gold sentences, predicted sentences], ...].
SEQEVAL = """
import json, sys, warnings
warnings.simplefilter("ignore")  # "seems not to be NE tag", undefined metrics: scored as 0
from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities
results = []
for gold, predicted in json.load(sys.stdin):
  results.append({"precision": precision_score(gold, predicted, zero_division=0),
                  "recall": recall_score(gold, predicted, zero_division=0),
                  "f1": f1_score(gold, predicted, zero_division=0),
                  "gold": len(get_entities(gold)), "predicted": len(get_entities(predicted))})
print(json.dumps(results))
"""


def seqeval_scores(cases):
  """[(gold sentences, predicted sentences)] → seqeval's scores of each (see SEQEVAL)."""
  return run_peer(SEQEVAL, [[gold, predicted] for gold, predicted in cases])
