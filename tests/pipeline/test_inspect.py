"""End-to-end: `pipeline.inspect` on the pipeline's own output (as a process: test_light_clis.py)."""

import os
import re
import shutil

import numpy as np

import contract
from tests.conftest import call_cli, read_metadata, read_records

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def split_row(stdout, split):
  """The summary's table row of a split: examples, tokens, shards, p50, p90, p99, max."""
  match = re.search(rf"^\s+{split}((?:\s+\d+){{7}})\s*$", stdout, re.MULTILINE)
  assert match, stdout
  return [int(cell) for cell in match.group(1).split()]


def nearest_rank_percentiles(histogram):
  """p50, p90, p99 and max, computed independently of the tool: numpy on the expanded lengths."""
  lengths = np.repeat([int(l) for l in histogram], list(histogram.values()))
  return [int(np.percentile(lengths, p, method="inverted_cdf")) for p in (50, 90, 99)] + [int(lengths.max())]


def example_lines(stdout):
  return re.findall(r"^  \[(\d+)\] (.*)$", stdout, re.MULTILINE)


def decode(output_dir, record, task):
  token_vocab = contract.read_vocab(os.path.join(output_dir, "vocab.txt"))
  tokens = [token_vocab[i] for i in record["tokens"]]
  if task == "lm":
    return " ".join(tokens)
  label_vocab = contract.read_vocab(os.path.join(output_dir, "labels.txt"))
  if task == "tag":
    return " ".join(f"{t}/{label_vocab[l]}" for t, l in zip(tokens, record["labels"]))
  return label_vocab[record["label"]] + "\t" + " ".join(tokens)


def test_summary_examples_and_plot_on_the_demo_corpus(demo_tag_data, tmp_path):
  data_dir = tmp_path / "data"  # a copy: the default plot goes into the directory
  shutil.copytree(demo_tag_data, data_dir)
  process = call_cli("pipeline.inspect", data_dir, "--n", "4")
  stdout = process.stdout
  metadata = read_metadata(data_dir)

  assert f"task {metadata['task']}" in stdout
  for split in contract.TRAINING_SPLITS:
    info = metadata["splits"][split]
    row = split_row(stdout, split)
    assert row[:3] == [info["examples"], info["tokens"], len(info["shards"])]
    assert row[3:] == nearest_rank_percentiles(metadata["length_histogram"][split])
  assert f"vocabulary {metadata['vocab']['size']} tokens, {metadata['labels']['size']} labels" in stdout
  counts = metadata["counts"]
  assert (f"counts: read {counts['read']}, written {counts['written']}, filtered 0, dead letters 0, "
          f"truncated {counts['truncated']}") in stdout
  for k, bucket in metadata["bucket_boundaries"].items():
    waste = f"{100 * bucket['padding_waste']:5.2f}%"
    assert f"K={k:<2s} padding waste {waste}: " + " ".join(map(str, bucket["boundaries"])) in stdout

  examples = example_lines(stdout)
  records = read_records(data_dir, "train")[:4]
  assert [int(index) for index, _ in examples] == [0, 1, 2, 3]
  assert [line for _, line in examples] == [decode(data_dir, r, "tag") for r in records]

  plot = data_dir / "lengths.png"
  assert plot.read_bytes().startswith(PNG_SIGNATURE)
  assert stdout.strip().splitlines()[-1].endswith(str(plot))


def test_reasons_classify_and_gzip(classify_run, tmp_path):
  data_dir = classify_run  # gzip-compressed shards; filtered records and dead letters of many reasons
  metadata = read_metadata(data_dir)
  counts = metadata["counts"]
  assert metadata["options"]["compression"] == "gzip" and counts["filtered"] and counts["dead_letter"]

  plot = tmp_path / "plots" / "mine.png"
  process = call_cli("pipeline.inspect", data_dir, "--split", "eval", "--n", "100", "--plot", plot)
  counts_line = next(line for line in process.stdout.splitlines() if line.startswith("counts:"))
  for kind, name in (("filtered", "filtered"), ("dead_letter", "dead letters")):
    reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(counts[kind].items()))
    assert f"{name} {sum(counts[kind].values())} ({reasons})" in counts_line

  records = read_records(data_dir, "eval")
  assert 0 < len(records) < 100
  assert [line for _, line in example_lines(process.stdout)] == [decode(data_dir, r, "classify") for r in records]
  assert plot.read_bytes().startswith(PNG_SIGNATURE)
  assert not os.path.exists(os.path.join(data_dir, "lengths.png"))


def test_a_directory_without_completed_exits_2_with_one_line(demo_tag_data, tmp_path):
  data_dir = tmp_path / "data"
  shutil.copytree(demo_tag_data, data_dir)
  os.remove(data_dir / contract.COMPLETED_FILE)
  process = call_cli("pipeline.inspect", data_dir, check=False)
  assert process.returncode == 2
  assert process.stdout == ""
  last = process.stderr.strip().splitlines()[-1]
  assert last.startswith("python -m pipeline.inspect: error:") and "COMPLETED" in last, process.stderr[-2000:]
  assert "Traceback" not in process.stderr
  assert not (data_dir / "lengths.png").exists()


def test_a_corrupt_shard_exits_2_with_one_line_after_the_summary(demo_tag_data, tmp_path):
  data_dir = tmp_path / "data"
  shutil.copytree(demo_tag_data, data_dir)
  shard = data_dir / read_metadata(data_dir)["splits"]["train"]["shards"][0]["file"]
  corrupted = bytearray(shard.read_bytes())
  corrupted[100] ^= 0xFF  # same size, so only the record's CRC can tell
  shard.write_bytes(bytes(corrupted))
  process = call_cli("pipeline.inspect", data_dir, check=False)
  assert process.returncode == 2
  assert "counts: read" in process.stdout
  last = process.stderr.strip().splitlines()[-1]
  assert last.startswith("error: a train shard is corrupt (corrupted record at "), process.stderr[-2000:]
  assert "Traceback" not in process.stderr
