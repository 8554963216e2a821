"""`python -m trainer.batches`: one pass through the trainer's own input pipeline, reported."""

import json

import numpy as np
import pytest

import contract
from tests.conftest import read_records, run_cli


def batches(data_dir, *args):
  process = run_cli("trainer.batches", "--data_dir", data_dir, *args)
  return json.loads(process.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("pad_multiple", [0, 4])
def test_reports_every_example_and_the_padding_of_the_real_batches(demo_tag_data, pad_multiple):
  metadata = contract.read_metadata(demo_tag_data)
  report = batches(demo_tag_data, "--num_buckets", "8", "--tokens_per_batch", "512", "--cpu_replicas", "2",
                   "--split", "eval", "--pad_multiple", str(pad_multiple))
  lengths = np.array([record["length"] for record in read_records(demo_tag_data, "eval")])
  assert report["examples"] == len(lengths) == metadata["splits"]["eval"]["examples"]
  assert report["tokens"] == lengths.sum() and report["dropped"] == 0
  slots = report["tokens"] / (1 - report["padding_waste"])  # padding_waste is rounded to 1e-6
  boundaries = report["boundaries"]
  if not pad_multiple:  # each row padded to its bucket's width, filler rows on top
    assert slots >= sum(min(b for b in boundaries if b >= length) for length in lengths) * (1 - 1e-5)
  if not pad_multiple:
    assert report["shapes"] <= 2 * len(boundaries)  # a full and a last, smaller batch per bucket


def test_pad_multiple_pads_less_than_the_bucket_boundaries(demo_tag_data):
  to_boundary = batches(demo_tag_data, "--num_buckets", "4")
  to_longest = batches(demo_tag_data, "--num_buckets", "4", "--pad_multiple", "1")
  assert to_longest["tokens"] == to_boundary["tokens"]
  assert to_longest["padding_waste"] < to_boundary["padding_waste"]


def test_refuses_a_negative_pad_multiple(demo_tag_data):
  process = run_cli("trainer.batches", "--data_dir", demo_tag_data, "--pad_multiple", "-1", check=False)
  assert process.returncode == 2 and "must be >= 0" in process.stderr
