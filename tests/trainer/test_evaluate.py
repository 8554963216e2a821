"""trainer.evaluate, trainer.predict --input, and the best checkpoint, on the session's demo tagger."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import ROOT, call_cli

DEMO_CONLL = os.path.join(ROOT, "data", "demo", "tagged.conll")


def metrics_json(model_dir):
  with open(os.path.join(model_dir, "metrics.json")) as f:
    return json.load(f)


def last_json_line(process):
  return json.loads(process.stdout.strip().splitlines()[-1])


def test_evaluate_on_the_eval_split_reproduces_the_exported_steps_metrics(demo_tagger, demo_tag_data):
  model_dir, _ = demo_tagger
  process = call_cli("trainer.evaluate", "--model_dir", model_dir, "--data_dir", demo_tag_data, "--split", "eval")
  got, want = last_json_line(process), metrics_json(model_dir)["best"]
  assert set(got) == set(want)
  for key in want:
    assert got[key] == pytest.approx(want[key], abs=1e-4), key


def test_evaluate_refuses_a_data_dir_with_another_vocabulary(demo_tagger, demo_tag_data, tmp_path):
  data_dir = tmp_path / "data"
  shutil.copytree(demo_tag_data, data_dir)
  vocab = (data_dir / "vocab.txt").read_text(encoding="utf-8").split("\n")
  vocab[2], vocab[3] = vocab[3], vocab[2]  # same size, other ids
  (data_dir / "vocab.txt").write_text("\n".join(vocab), encoding="utf-8")
  process = call_cli("trainer.evaluate", "--model_dir", demo_tagger[0], "--data_dir", data_dir, check=False)
  assert process.returncode == 2
  assert "differ from the model's" in process.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def conll_file(tmp_path_factory):
  """The first 300 demo sentences, a -DOCSTART- line, and a sentence with a row without a token."""
  with open(DEMO_CONLL, encoding="utf-8") as f:
    blocks = f.read().split("\n\n")[:300]
  bad = "The\tDET\n\tNOUN\nsleeps\tVERB"
  path = tmp_path_factory.mktemp("conll") / "test.conll"
  path.write_text("\n\n".join(blocks[:150] + [bad] + blocks[150:]) + "\n", encoding="utf-8")
  return path


def test_predict_conll_keeps_tokens_and_its_accuracy_equals_evaluate(demo_tagger, conll_file, tmp_path):
  model_dir, _ = demo_tagger
  output = tmp_path / "predicted.conll"
  predicted = call_cli("trainer.predict", "--model_dir", model_dir, "--input", conll_file, "--format", "conll",
                      "--output", output, "--batch_size", "16")
  assert "1 records without a prediction: {'bad_token': 1}" in predicted.stderr
  evaluated = last_json_line(call_cli("trainer.evaluate", "--model_dir", model_dir, "--input", conll_file,
                                     "--format", "conll"))
  assert evaluated["dead_letter"] == {"bad_token": 1}

  given = conll_file.read_text(encoding="utf-8").split("\n")
  got = output.read_text(encoding="utf-8").split("\n")
  assert len(got) == len(given)  # every line in its place, -DOCSTART- and blank lines too
  correct = total = unpredicted = 0
  for line_in, line_out in zip(given, got):
    if not line_in or line_in.startswith("-DOCSTART-"):
      assert line_out == line_in
      continue
    columns = line_out.split("\t")
    assert columns[:len(line_in.split("\t"))] == line_in.split("\t")  # the tokens (and gold) exactly as given
    if len(columns) == len(line_in.split("\t")):
      unpredicted += 1  # the bad sentence's rows: no prediction
      continue
    total += 1
    correct += columns[-1] == columns[-2]
  assert unpredicted == 3
  assert total == evaluated["eval_tokens"]
  assert correct / total == pytest.approx(evaluated["eval_accuracy"], abs=1e-9)


def test_predict_bad_rows_get_an_empty_prediction_in_place(demo_tagger, tmp_path):
  model_dir, _ = demo_tagger
  jsonl = tmp_path / "in.jsonl"
  jsonl.write_text('{"tokens": ["The", "cat", "sleeps"]}\nnot json\n{"text": "Alice sees the dog"}\n',
                   encoding="utf-8")
  process = call_cli("trainer.predict", "--model_dir", model_dir, "--input", jsonl, "--format", "jsonl")
  lines = [json.loads(line) for line in process.stdout.splitlines()]
  assert len(lines) == 3 and lines[1] == {"error": "bad_json"}
  assert lines[0]["tokens"] == ["The", "cat", "sleeps"] and len(lines[0]["labels"]) == 3
  assert len(lines[2]["labels"]) == 4
  assert "1 records without a prediction: {'bad_json': 1}" in process.stderr

  text = tmp_path / "in.txt"
  text.write_text("The cat sleeps\n\nAlice sees the dog\n", encoding="utf-8")
  process = call_cli("trainer.predict", "--model_dir", model_dir, "--input", text, "--format", "text")
  first, blank, third = process.stdout.split("\n")[:3]
  assert blank == "" and len(first.split()) == 3 and len(third.split()) == 4
  assert [line["labels"] for line in (lines[0], lines[2])] == [first.split(), third.split()]

  wrong = call_cli("trainer.predict", "--model_dir", model_dir, "--input", jsonl, "--format", "conll", check=False)
  assert wrong.returncode == 2 and wrong.stdout == ""
  assert "does not look like --format conll" in wrong.stderr.strip().splitlines()[-1]


def model_arrays(path):
  reader = tf.train.load_checkpoint(str(path))
  return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
          if name.endswith("VARIABLE_VALUE") and "optimizer" not in name and "save_counter" not in name}


def test_the_export_is_the_checkpoint_of_best_step(demo_tagger):
  model_dir, _ = demo_tagger
  best_step = metrics_json(model_dir)["best_step"]
  best = model_dir / "checkpoints" / "best" / f"ckpt-{best_step}"
  assert tf.train.load_checkpoint(str(best)).get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == best_step
  exported = model_arrays(model_dir / "export" / "variables" / "variables")
  saved = list(model_arrays(best).values())
  assert len(exported) >= 5
  for name, array in exported.items():  # names differ (the export's root is the serving module)
    assert any(a.shape == array.shape and np.array_equal(a, array) for a in saved), name
