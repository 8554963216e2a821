"""The light CLIs as a user runs them: no Beam or TFT imported, no TensorFlow start-up lines.

What each CLI prints and computes is tested in this process (test_batches, test_inspect,
test_evaluate, test_predict); here, one fresh interpreter runs them in turn, with no
TF_CPP_MIN_LOG_LEVEL in its environment (the tests set one), and only what a process
shows is asserted.
"""

import json

import pytest

from tests.cli_testing import run_clis_in_one_process

# What TensorFlow's C++ and absl start-up logging print on a machine without a GPU.
TENSORFLOW_NOISE = ("absl::InitializeLog", "cudart_stub", "cuInit", "cuda_platform", "oneDNN", "cpu_feature_guard")


@pytest.mark.long
def test_light_clis_import_no_beam_or_tft_and_print_no_tensorflow_start_up_lines(demo_tag_data, demo_tagger,
                                                                                  tmp_path):
  model_dir, _ = demo_tagger
  commands = [  # trainer.batches first: it loads TensorFlow, so the start-up lines would be its
      ("trainer.batches", ["--data_dir", demo_tag_data, "--num_buckets", "8", "--cpu_replicas", "2",
                           "--split", "eval"], None),
      ("pipeline.inspect", [demo_tag_data, "--n", "2", "--plot", tmp_path / "lengths.png"], None),
      ("trainer.evaluate", ["--model_dir", model_dir, "--data_dir", demo_tag_data], None),
      ("trainer.predict", ["--model_dir", model_dir], "The cat sleeps\n\nAlice sees the dog\n"),
  ]
  # oneDNN forced on, as by default on CPUs with AVX-512 VNNI or BF16, or AMX: its graph rewrite
  # logs an error-level line about integer ops that must not reach the console either.
  results, console = run_clis_in_one_process(commands, env={"TF_CPP_MIN_LOG_LEVEL": None,
                                                            "TF_ENABLE_ONEDNN_OPTS": "1"})
  for (module, _, _), result in zip(commands, results):
    assert result["returncode"] == 0, (module, result["stderr"][-4000:])
    assert result["imported"] == [], (module, sorted({name.split(".")[0] for name in result["imported"]}))
    noise = [line for line in (result["stderr"] + console).splitlines() if any(w in line for w in TENSORFLOW_NOISE)]
    assert not noise, (module, noise)
  assert set(json.loads(results[0]["stdout"].strip().splitlines()[-1])) >= {"examples", "padding_waste", "parser"}
  assert "counts: read" in results[1]["stdout"] and (tmp_path / "lengths.png").exists()
  assert "eval_loss" in json.loads(results[2]["stdout"].strip().splitlines()[-1])
  assert len(results[3]["stdout"].split("\n")) == 4  # 3 texts (one blank) and the final line end
