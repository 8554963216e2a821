"""`python -m trainer.batches`: one pass through the trainer's own input pipeline, reported.

The report is checked against an oracle that applies the batching rule (trainer/data.py) to
the split's lengths in plain Python. The CLI's JSON line is checked through its entry
function, the other cases call `batches.measure`; its quiet console: test_light_clis.py.
"""

import json

import pytest

import contract
from tests.conftest import call_cli, read_records
from trainer import batches
from trainer import ops


def expected_slots(lengths, boundaries, batch_sizes, replicas, pad_multiple):
  """Padded slots of one eval pass, by the batching rule, from the lengths in file order.

  Each bucket's rows, in file order, fill batches of its batch size; the rows left over
  form one last batch, topped up with filler rows to a multiple of `replicas`. A batch is
  as wide as its bucket's boundary, or (pad_multiple N) as its longest row rounded up to a
  multiple of N, never wider than the boundary; its rows are then sorted by length, so
  each batch takes the next rows of its bucket in length order.
  """
  per_bucket = [[] for _ in boundaries]
  for length in lengths:
    per_bucket[min(i for i, b in enumerate(boundaries) if b >= length)].append(length)
  slots = 0
  for boundary, size, rows in zip(boundaries, batch_sizes, per_bucket):
    full = len(rows) // size * size
    parts = [sorted(rows[:full]), sorted(rows[full:])]
    batches_of_bucket = [parts[0][i:i + size] for i in range(0, full, size)] + ([parts[1]] if parts[1] else [])
    for batch in batches_of_bucket:
      width = boundary
      if pad_multiple:
        width = min(boundary, -(-max(batch) // pad_multiple) * pad_multiple)
      slots += -(-len(batch) // replicas) * replicas * width
  return slots


def test_the_cli_prints_the_report_as_json(demo_tag_data):
  args = ("--num_buckets", "8", "--tokens_per_batch", "512", "--cpu_replicas", "2", "--split", "eval")
  process = call_cli("trainer.batches", "--data_dir", demo_tag_data, *args)
  report = json.loads(process.stdout.strip().splitlines()[-1])
  assert report["parser"] == ("native" if ops.available() else "tf.io.parse_sequence_example")
  in_process = batches.measure(demo_tag_data, 8, 512, 2, "eval", pad_multiple=2)
  assert {k: v for k, v in report.items() if k != "examples_per_s"} == {
      k: v for k, v in in_process.items() if k != "examples_per_s"}


@pytest.mark.parametrize("pad_multiple", [0, 4])
def test_reports_every_example_and_the_padding_of_the_real_batches(demo_tag_data, pad_multiple):
  metadata = contract.load_metadata(demo_tag_data)
  report = batches.measure(demo_tag_data, num_buckets=8, tokens_per_batch=512, replicas=2, split="eval",
                           pad_multiple=pad_multiple)
  lengths = [int(record["length"]) for record in read_records(demo_tag_data, "eval")]
  assert report["examples"] == len(lengths) == metadata.examples("eval")
  assert report["tokens"] == sum(lengths) and report["dropped"] == 0
  slots = expected_slots(lengths, report["boundaries"], report["batch_sizes"], 2, pad_multiple)
  assert report["padding_waste"] == pytest.approx(1 - sum(lengths) / slots, abs=1e-6)
  if not pad_multiple:
    assert report["shapes"] <= 2 * len(report["boundaries"])  # a full and a last, smaller batch per bucket


def test_pad_multiple_pads_less_than_the_bucket_boundaries(demo_tag_data):
  to_boundary = batches.measure(demo_tag_data, num_buckets=4, tokens_per_batch=4096, replicas=1, pad_multiple=0)
  to_longest = batches.measure(demo_tag_data, num_buckets=4, tokens_per_batch=4096, replicas=1, pad_multiple=1)
  assert to_longest["tokens"] == to_boundary["tokens"] == contract.load_metadata(demo_tag_data).splits["train"][
      "tokens"]
  assert to_longest["padding_waste"] < to_boundary["padding_waste"]
  assert to_longest["shapes"] > to_boundary["shapes"]  # the price: more distinct shapes


def test_refuses_a_negative_pad_multiple(demo_tag_data, capsys):
  with pytest.raises(SystemExit) as exit_:
    batches.run(["--data_dir", demo_tag_data, "--pad_multiple", "-1"])
  assert exit_.value.code == 2 and "must be >= 0" in capsys.readouterr().err
