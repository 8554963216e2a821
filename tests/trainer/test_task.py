"""End-to-end: trainer.task on the pipeline's own output, through its entry function in this
process; as `python -m trainer.task` where a process is the point (SIGKILL, TF_CONFIG workers)."""

import dataclasses
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf

import contract
from tests.conftest import DEMO_TAGGER_FLAGS, ROOT, call_cli, preprocess, read_metadata, read_records
from trainer import config as config_lib
from trainer import task
from trainer.config import TrainerConfig
from trainer.model import build_model

SMALL = ("--embedding_dim", "16", "--hidden", "24", "--tokens_per_batch", "1024", "--log_every", "10")


def train(data_dir, model_dir, *args, check=True):
  """trainer.task with the small model, in this process (`call_cli`)."""
  return call_cli("trainer.task", "--data_dir", data_dir, "--model_dir", model_dir, *SMALL, *args, check=check)


@pytest.fixture(scope="module")
def trained(demo_tagger):
  return demo_tagger  # tests/conftest.py: trained once per session, shared with test_predict and test_evaluate


def test_trains_on_2_replicas_and_the_loss_decreases(trained, demo_tag_data):
  model_dir, process = trained
  losses = [float(l) for l in re.findall(r"step \d+/\d+\s+loss ([\d.]+)", process.stderr)]
  assert len(losses) == len(set(range(10, 101, 10)) | {25, 50, 75})  # every 10 steps, and at each eval
  # Any sane corpus: the model ends better than where it started, and better than
  # guessing uniformly among the labels (log of their number) on data it never saw.
  num_classes = contract.load_metadata(demo_tag_data).num_classes
  assert losses[-1] < losses[0] and min(losses[-3:]) < min(losses[:3])
  with open(model_dir / "metrics.json") as f:
    metrics = json.load(f)
  assert metrics["eval_loss"] < np.log(num_classes - contract.NUM_RESERVED)
  assert metrics["replicas"] == 2 and metrics["global_step"] == 100
  assert 0.0 <= metrics["padding_waste"] < 0.2 and metrics["tokens_per_s"] > 0
  assert metrics["eval_accuracy"] > 1.0 / (num_classes - contract.NUM_RESERVED)
  assert metrics["parser"] in ("native", "tf.io.parse_sequence_example")
  assert metrics["best_step"] in (25, 50, 75, 100) and metrics["best"]["eval_accuracy"] >= metrics["eval_accuracy"]
  assert os.listdir(model_dir / "logs")
  assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")).endswith("-100")


def test_export_on_raw_text_equals_the_model_on_the_pipelines_records(trained, demo_tag_data):
  model_dir, _ = trained
  metadata = contract.read_metadata(demo_tag_data)
  token_vocab = contract.read_vocab(os.path.join(demo_tag_data, "vocab.txt"))
  char_vocab = contract.read_vocab(os.path.join(demo_tag_data, "chars.txt"))
  # The text as written: tag data lowercases the words but keeps their characters' case, so
  # each token is spelled from its chars (records whose chars are all known and uncut).
  spelled = lambda r: ["".join(char_vocab[c] for c in step) for step in r["chars"]]
  records = [r for r in read_records(demo_tag_data, "eval")
             if all(c > 1 for step in r["chars"] for c in step)
             and [w.lower() for w in spelled(r)] == [token_vocab[i] if i > 1 else w.lower()
                                                     for i, w in zip(r["tokens"], spelled(r))]][:40]
  assert len(records) >= 20
  texts = [" ".join(spelled(r)) for r in records]

  argv = ["--data_dir", demo_tag_data, "--model_dir", str(model_dir), *DEMO_TAGGER_FLAGS]
  args = task.build_parser().parse_args(argv)  # the demo tagger's own config, with tag's defaults
  config = TrainerConfig(**{field.name: getattr(args, field.name) for field in dataclasses.fields(TrainerConfig)})
  config = config.with_task_defaults("tag", task._given_flags(argv))  # pylint: disable=protected-access
  # Tag data holds each token's characters, and the default model encodes them: the char ids
  # go from the shards, through the parser, into the model, and serving computes them from text.
  assert config.uses_chars and "chars" in metadata
  model = build_model(config, "tag", metadata["vocab"]["size"], metadata["labels"]["size"], metadata["chars"]["size"])
  with open(model_dir / "metrics.json") as f:
    best_step = json.load(f)["best_step"]  # --export best (the default) exports that step's checkpoint
  tf.train.Checkpoint(model=model).restore(str(model_dir / "checkpoints" / "best" / f"ckpt-{best_step}")).expect_partial()

  serving = tf.saved_model.load(str(model_dir / "export")).signatures["serving_default"]
  out = serving(text=tf.constant(texts))
  label_vocab = contract.read_vocab(os.path.join(demo_tag_data, "labels.txt"))
  for i, record in enumerate(records):
    n = int(record["length"])
    chars = tf.ragged.constant([record["chars"]], tf.int64).to_tensor().numpy()
    expected = np.argmax(model({"tokens": record["tokens"][None, :], "chars": chars}, training=False).numpy()[0], axis=-1)
    known = record["tokens"] != contract.UNK_ID  # "<unk>" as text is not the <unk> id's token
    np.testing.assert_array_equal(out["token_ids"].numpy()[i, :n][known], record["tokens"][known])
    if known.all():
      np.testing.assert_array_equal(out["label_ids"].numpy()[i, :n], expected)
      assert [l.decode() for l in out["labels"].numpy()[i, :n]] == [label_vocab[j] for j in expected]
    assert (out["label_ids"].numpy()[i, n:] == contract.PAD_ID).all()


def checkpoint_weights(path):
  """Every variable of a checkpoint: a checkpoint's prefix, or a directory's latest."""
  reader = tf.train.load_checkpoint(str(path))
  # Model weights appear through the optimizer's references; compare every variable.
  names = sorted(n for n in reader.get_variable_to_shape_map()
                 if n.endswith("VARIABLE_VALUE") and not n.startswith("save_counter"))
  return {n: reader.get_tensor(n) for n in names}


def test_refuses_a_data_dir_without_completed(tmp_path):
  (tmp_path / "data").mkdir()
  process = train(tmp_path / "data", tmp_path / "model", check=False)
  assert process.returncode == 2
  assert "COMPLETED" in process.stderr.strip().splitlines()[-1]


def test_an_lm_without_eval_examples_exports_its_last_step_and_serves_raw_text_as_its_shards(tmp_path):
  # --eval_fraction 0 leaves nothing to evaluate. A split of zeros would score a perfect loss
  # at the first evaluation, which would then stay "best" and be exported, undertrained.
  with open(os.path.join(ROOT, "data", "demo", "sentences.txt"), encoding="utf-8") as f:
    lines = f.read().splitlines()[:300]
  corpus, data, model = tmp_path / "sentences.txt", tmp_path / "data", tmp_path / "model"
  corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
  # With --chars and --tie_embeddings: the pieces' characters and the tied head go through
  # the export, the raw file's transform, scoring and generation (whose next_token looks up
  # each piece's characters).
  preprocess(corpus, data, "text", "lm", "--tokenizer", "wordpiece", "--max_vocab", "60", "--eval_fraction", "0",
             "--chars")
  refused = train(data, model, "--early_stopping", "1", check=False)
  assert refused.returncode == 2 and "--early_stopping needs eval examples" in refused.stderr
  process = train(data, model, "--train_steps", "40", "--eval_every", "20", "--log_every", "20", "--tie_embeddings")
  with open(model / "model.json") as f:
    description = json.load(f)
  assert description["tie_embeddings"] and description["chars"]["encoder"] == "cnn"
  from trainer import export  # pylint: disable=g-import-not-at-top
  table = export.vocab_char_table(contract.load_metadata(str(data)), str(data))  # next_token's chars of each id
  for record in read_records(data, "train")[:100]:
    for token, chars in zip(record["tokens"], record["chars"]):
      if token != contract.UNK_ID:  # an <unk> piece holds its word's characters
        assert [c for c in table[token] if c] == chars
  assert "no eval examples" in process.stderr and "exported step 40 (last: no eval examples)" in process.stdout
  with open(model / "metrics.json") as f:
    metrics = json.load(f)
  assert metrics["global_step"] == metrics["best_step"] == 40 and metrics["best"] == {}
  assert read_metadata(data)["vocab"]["eos_id"] == contract.EOS_ID
  assert contract.read_vocab(os.path.join(data, "vocab.txt"))[:3] == ["<pad>", "<unk>", "</s>"]
  assert not [key for key in metrics if key.startswith("eval_")]
  evaluate = lambda *args: call_cli("trainer.evaluate", "--model_dir", model, *args, check=False)
  refused = evaluate("--data_dir", data)
  assert refused.returncode == 2 and "no eval examples" in refused.stderr

  # The export on the raw file (its transform_fn, then the model) scores what the train
  # shards' ids score, and trainer.predict's per-line log-likelihoods add up to it.
  on_shards = json.loads(evaluate("--data_dir", data, "--split", "train").stdout)
  on_text = json.loads(evaluate("--input", corpus, "--format", "text").stdout)
  assert on_text["eval_tokens"] == on_shards["eval_tokens"] and on_text["eval_examples"] == len(lines)
  for key in ("eval_loss", "eval_bits_per_char"):
    assert on_text[key] == pytest.approx(on_shards[key], rel=1e-5)
  predicted = call_cli("trainer.predict", "--model_dir", model, "--input", corpus, "--format", "text").stdout
  log_likelihoods = [float(line.split()[1]) for line in predicted.splitlines()]
  targets = on_shards["eval_tokens"] + on_shards["eval_examples"]  # each token, and the end after the last
  assert len(log_likelihoods) == len(lines)
  assert -sum(log_likelihoods) == pytest.approx(on_shards["eval_loss"] * targets, rel=1e-4)

  # --generate joins continuation pieces into words, as the corpus was written.
  generated = call_cli("trainer.predict", "--model_dir", model, "--generate", "40", "--seed", "1",
                       "the heavy engineer").stdout.strip()
  with open(data / "vocab.txt", encoding="utf-8") as f:
    assert sum(line.startswith("##") for line in f) > 10  # plenty of continuation pieces to draw
  assert generated.startswith("the heavy engineer") and "##" not in generated
  assert len(generated.split()) < 3 + 40
  # Every sentence of the corpus ends after its punctuation: the model learned to end
  # there, and generation stops where it ends the text (the most likely token, nearly always).
  for prompt in ("the heavy engineer sleeps .", "a quick light pipeline knows that every tree falls !"):
    ended = call_cli("trainer.predict", "--model_dir", model, "--generate", "10", "--temperature", "0.001",
                     prompt).stdout.strip()
    assert ended == prompt


def train_until_preempted(*args):
  """trainer.task with `args`, in this process, sent SIGTERM (a preemption notice) when it
  logs its first step line: it checkpoints there and exits 143."""
  import logging  # pylint: disable=g-import-not-at-top
  import signal  # pylint: disable=g-import-not-at-top

  class PreemptAtFirstProgress(logging.Handler):
    sent = False

    def emit(self, record):
      # Only while the trainer's SIGTERM handler is in place: else the signal would end pytest.
      handler = signal.getsignal(signal.SIGTERM)
      if not self.sent and re.match(r"step \d+/\d+ ", record.getMessage()) and getattr(
          handler, "__name__", "") == "request_stop":
        self.sent = True
        signal.raise_signal(signal.SIGTERM)

  preempt = PreemptAtFirstProgress()
  logging.getLogger().addHandler(preempt)
  try:
    process = call_cli("trainer.task", *args, check=False)
  finally:
    logging.getLogger().removeHandler(preempt)
  assert preempt.sent and process.returncode == 128 + signal.SIGTERM, process.stderr[-4000:]
  assert "Stopped by SIGTERM" in process.stderr
  return process


@pytest.mark.long
def test_a_preempted_then_killed_run_resumes_exactly_and_keeps_its_best_and_patience(
    demo_tag_data, demo_tagger, tmp_path):
  """The demo tagger's run, stopped twice: SIGTERM (a preemption notice) as soon as it makes
  progress, then, resumed from the checkpoint that wrote, SIGKILL as soon as its next
  scheduled checkpoint is complete. Resumed once more, it reaches the uninterrupted run's
  weights, optimizer and dropout RNG states at the next step that run kept; and it goes on
  from best.json as the killed run left it: the best step, and the evaluations without
  improvement that count towards --early_stopping."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from tests.conftest import ROOT, kill_when  # pylint: disable=g-import-not-at-top
  model_dir = tmp_path / "model"
  flags = ["--data_dir", demo_tag_data, "--model_dir", model_dir, *DEMO_TAGGER_FLAGS]

  preempted = train_until_preempted(*flags, "--log_every", "5", "--checkpoint_every", "1000")
  stopped = int(re.search(r"Stopped by SIGTERM at step (\d+)", preempted.stderr).group(1))
  assert stopped == 5, stopped  # the signal came while step 5 was logged: stopped right there
  assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")).endswith("-5")  # none scheduled: SIGTERM's
  assert not os.path.exists(model_dir / "export")

  # One thread per op, as in this process (tests/conftest.py): how many threads share a
  # matmul or convolution changes the order of its sums, and so the last bits of the weights.
  killed = subprocess.Popen([sys.executable, "-m", "trainer.task", *map(str, flags)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_NUM_INTRAOP_THREADS": "1",
                                 "TF_NUM_INTEROP_THREADS": "1"})
  marker = model_dir / "checkpoints" / "checkpoint"  # written after the checkpoint's files
  kill_when(killed, lambda: marker.exists() and '"ckpt-25"' in marker.read_text())
  assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")).endswith("-25")

  # Step 25 was evaluated before its checkpoint: the best so far. Make it one no later step
  # can beat, with one evaluation without improvement already counted.
  best_path = model_dir / "checkpoints" / "best" / "best.json"
  state = json.loads(best_path.read_text())
  assert state["best_step"] == 25
  state["best"]["eval_accuracy"] = 2.0
  state["evals_without_improvement"] = 1
  best_path.write_text(json.dumps(state))
  resumed = call_cli("trainer.task", *flags, "--early_stopping", "2")
  assert "at step 25" in resumed.stderr and "(early stopping)" in resumed.stdout
  with open(model_dir / "metrics.json") as f:
    metrics = json.load(f)
  assert metrics["global_step"] == 50  # the evaluation at 50 did not improve either: 2 in a row
  assert metrics["best_step"] == 25 and metrics["best"]["eval_accuracy"] == 2.0
  assert json.loads(best_path.read_text())["evals_without_improvement"] == 2
  assert "exported step 25 (best)" in resumed.stdout and os.path.exists(model_dir / "export")

  want = checkpoint_weights(demo_tagger[0] / "checkpoints" / "ckpt-50")  # it kept 50, 75 and 100
  got = checkpoint_weights(model_dir / "checkpoints" / "ckpt-50")
  assert want.keys() == got.keys() and want
  for name in want:
    np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def free_port():
  import socket  # pylint: disable=g-import-not-at-top
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.long
def test_two_workers_on_localhost_finish_with_the_same_weights(demo_tag_data, tmp_path):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from tests.conftest import ROOT  # pylint: disable=g-import-not-at-top
  model_dir = tmp_path / "model"
  cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
  workers = []
  for index in range(2):
    tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
    workers.append(subprocess.Popen(
        [sys.executable, "-m", "trainer.task", "--data_dir", demo_tag_data, "--model_dir", str(model_dir),
         *SMALL, "--train_steps", "12", "--eval_every", "12", "--checkpoint_every", "6"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_CONFIG": tf_config}))
  outputs = [w.communicate(timeout=600) for w in workers]
  codes = [w.returncode for w in workers]
  assert codes == [0, 0], "\n\n".join(f"worker-{i} exited {c}:\n{e[-4000:]}" for i, (c, (_, e)) in
                                     enumerate(zip(codes, outputs)))
  assert "with 2 replicas (worker-0)" in outputs[0][1] and "with 2 replicas (worker-1)" in outputs[1][1]
  with open(model_dir / "metrics.json") as f:
    chief = json.load(f)
  with open(model_dir / "workers" / "worker-1" / "metrics.json") as f:
    other = json.load(f)
  assert chief["global_step"] == other["global_step"] == 12 and chief["replicas"] == 2
  assert chief["eval_loss"] == pytest.approx(other["eval_loss"], rel=1e-6)
  want = checkpoint_weights(model_dir / "checkpoints")
  got = checkpoint_weights(model_dir / "workers" / "worker-1" / "checkpoints")
  assert want.keys() == got.keys() and want
  for name in want:
    np.testing.assert_array_equal(got[name], want[name], err_msg=name)
  assert os.path.exists(model_dir / "export") and not os.path.exists(model_dir / "workers" / "worker-1" / "export")


def copy_data_dir(demo_tag_data, tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top
  data_dir = tmp_path / "data"
  shutil.copytree(demo_tag_data, data_dir)
  return data_dir, contract.read_metadata(str(data_dir))["splits"]["train"]["shards"][0]["file"]


def test_flipped_byte_in_a_shard_stops_training_naming_the_file(demo_tag_data, tmp_path):
  data_dir, shard = copy_data_dir(demo_tag_data, tmp_path)
  path = data_dir / shard
  content = bytearray(path.read_bytes())
  content[len(content) // 2] ^= 0xFF  # same size: only the CRC can tell
  path.write_bytes(bytes(content))
  process = train(data_dir, tmp_path / "model", "--train_steps", "5", check=False)
  assert process.returncode == 2
  last = process.stderr.strip().splitlines()[-1]
  assert str(path) in last and "corrupted record at" in last
  assert "step 1" not in process.stderr  # refused before training: every shard is read once first
  assert not os.path.exists(tmp_path / "model" / "export")


def test_a_byte_flipped_after_the_first_run_stops_the_resumed_run_naming_the_file(demo_tag_data, tmp_path):
  # The counts are checked once per MODEL_DIR; after that, the TFRecord CRC still guards every read.
  data_dir, shard = copy_data_dir(demo_tag_data, tmp_path)
  model_dir = tmp_path / "model"
  first = train_until_preempted("--data_dir", data_dir, "--model_dir", model_dir, *SMALL, "--log_every", "1",
                                "--train_steps", "30")  # stopped at step 1
  assert "Checked" in first.stderr
  path = data_dir / shard
  content = bytearray(path.read_bytes())
  content[len(content) // 2] ^= 0xFF
  path.write_bytes(bytes(content))
  process = train(data_dir, model_dir, "--train_steps", "30", check=False)
  assert process.returncode == 2 and "Checked" not in process.stderr
  last = process.stderr.strip().splitlines()[-1]
  assert str(path) in last and "corrupted record at" in last
  assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")).endswith("-1")  # no step on bad data


@pytest.mark.parametrize("change", ["shard_and_totals", "split_total"])
def test_metadata_counts_that_disagree_with_the_shards_are_refused_before_training(demo_tag_data, tmp_path, change):
  data_dir, shard = copy_data_dir(demo_tag_data, tmp_path)
  with open(data_dir / "metadata.json") as f:
    metadata = json.load(f)
  train_split = metadata["splits"]["train"]
  if change == "shard_and_totals":  # consistent with itself, not with the shard
    train_split["shards"][0]["examples"] += 1
    train_split["examples"] += 1
    metadata["counts"]["written"] += 1
    expected = f"{data_dir / shard}: {train_split['shards'][0]['examples'] - 1} records, but metadata.json says"
  else:
    train_split["examples"] -= 1
    expected = "lists"
  with open(data_dir / "metadata.json", "w") as f:
    json.dump(metadata, f)
  process = train(data_dir, tmp_path / "model", "--train_steps", "5", check=False)
  assert process.returncode == 2
  last = process.stderr.strip().splitlines()[-1]
  assert expected in last and "step 1" not in process.stderr


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_damaged_data_dir_is_refused_before_training(demo_tag_data, tmp_path, damage):
  data_dir, shard = copy_data_dir(demo_tag_data, tmp_path)
  path = data_dir / shard
  if damage == "truncated":
    path.write_bytes(path.read_bytes()[:-10])
  else:
    path.unlink()
  process = train(data_dir, tmp_path / "model", "--train_steps", "5", check=False)
  assert process.returncode == 2
  last = process.stderr.strip().splitlines()[-1]
  assert str(path) in last and ("bytes" in last if damage == "truncated" else "missing" in last)
  assert "step 1" not in process.stderr


def test_a_model_dir_trained_for_another_model_is_refused(trained, demo_tag_data):
  model_dir, _ = trained
  process = train(demo_tag_data, model_dir, "--train_steps", "101", "--cell", "gru", "--no-bidirectional", check=False)
  assert process.returncode == 2
  last = process.stderr.strip().splitlines()[-1]
  assert "cell lstm (now gru)" in last and "bidirectional True (now False)" in last
  assert "Traceback" not in process.stderr


def test_the_datas_task_sets_the_defaults_of_the_flags_left_out():
  argv = ["--data_dir", "d", "--model_dir", "m", "--no-bidirectional", "--dropout", "0.1"]
  args = task.build_parser().parse_args(argv)
  config = TrainerConfig(**{field.name: getattr(args, field.name) for field in dataclasses.fields(TrainerConfig)})
  given = task._given_flags(argv)  # pylint: disable=protected-access
  tagger = config.with_task_defaults("tag", given)
  assert not tagger.bidirectional and tagger.dropout == 0.1  # given: the user's values win
  assert tagger.word_dropout == config_lib.TASK_DEFAULTS["tag"]["word_dropout"] > 0  # left out: the tagger's
  assert config.with_task_defaults("lm", given) == config  # no task defaults: the flags' own
