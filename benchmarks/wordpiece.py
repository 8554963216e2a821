"""--tokenizer wordpiece next to word: unk rate, pipeline throughput, LM bits per char, tagger accuracy.

    python -m benchmarks.corpus --corpus_mb 10 --out /tmp/wp/corpus.txt
    python -m benchmarks.wordpiece --corpus /tmp/wp/corpus.txt --rounds 2 --lm_steps 300 --tag_steps 300

Pipeline runs alternate word / wordpiece (`--rounds` pairs), so load from other processes
on the machine falls on both alike; the ratio is of the medians. The LM and the tagger
train the same steps with the same flags on both outputs. Bits per character come from
the eval loss sum (mean loss per target × targets, in nats; the trainer's own
`eval_bits_per_char` where it has one) over the eval split's characters, the same
denominator for both tokenizers.
"""

import argparse
import json
import math
import os
import statistics as stats

from benchmarks import common

TOKENIZERS = ("word", "wordpiece")


def preprocess(corpus, out_dir, file_format, task, tokenizer, max_vocab, log):
  argv = common.python_module(
      "pipeline.preprocess", "--input", corpus, "--output_dir", out_dir, "--format", file_format,
      "--task", task, "--max_vocab", max_vocab, "--tokenizer", tokenizer, "--overwrite")
  timing = common.run_timed(argv, log_path=log)
  return timing, common.read_json(os.path.join(out_dir, "metadata.json"))


def train(data_dir, model_dir, steps, log, *extra):
  argv = common.python_module(
      "trainer.task", "--data_dir", data_dir, "--model_dir", model_dir, "--train_steps", steps,
      "--eval_every", steps, "--checkpoint_every", steps, "--seed", 1, *extra)
  if os.path.exists(model_dir):
    import shutil  # pylint: disable=g-import-not-at-top
    shutil.rmtree(model_dir)
  common.run_timed(argv, log_path=log)
  return common.read_json(os.path.join(model_dir, "metrics.json"))


def bits_per_char(metrics: dict, metadata: dict) -> float:
  """Total eval log-loss in bits over the eval text's characters."""
  if "eval_bits_per_char" in metrics:  # the trainer's own, where it reports it
    return metrics["eval_bits_per_char"]
  split = metadata["splits"]["eval"]
  predicted = split["tokens"] - split["examples"]  # each token predicts the next: length - 1 targets
  return metrics["eval_loss"] * predicted / math.log(2) / split["characters"]


def pipeline_part(args, work, results) -> dict:
  """Alternating word / wordpiece runs on the prose corpus → metadata per tokenizer."""
  seconds = {t: [] for t in TOKENIZERS}
  metadata = {}
  for round_index in range(args.rounds):
    for tokenizer in TOKENIZERS:
      out_dir = os.path.join(work, f"lm_{tokenizer}")
      log = os.path.join(work, f"lm_{tokenizer}_{round_index}.log")
      timing, metadata[tokenizer] = preprocess(args.corpus, out_dir, "text", "lm", tokenizer, args.max_vocab, log)
      seconds[tokenizer].append(timing["seconds"])
      print(f"pipeline {tokenizer} round {round_index}: {timing['seconds']} s", flush=True)
  corpus_mb = os.path.getsize(args.corpus) / 1e6
  rows = []
  for tokenizer in TOKENIZERS:
    m, median = metadata[tokenizer], stats.median(seconds[tokenizer])
    rows.append([tokenizer, m["vocab"]["size"], f"{100 * m['unk_rate']['eval']:.3f}%",
                 f"{100 * m['unk_rate']['train']:.3f}%", m["splits"]["eval"]["tokens"],
                 f"{median:.1f}", f"{corpus_mb / median:.3f}"])
  ratio = stats.median(seconds["word"]) / stats.median(seconds["wordpiece"])
  results["pipeline"] = {"seconds": seconds, "throughput_ratio_wordpiece_over_word": round(ratio, 3),
                         "unk_rate": {t: metadata[t]["unk_rate"] for t in TOKENIZERS}}
  common.report(f"Pipeline on {corpus_mb:.1f} MB prose, --max_vocab {args.max_vocab} "
                f"(throughput wordpiece/word = {ratio:.2f})", rows,
                ["tokenizer", "vocab", "eval unk", "train unk", "eval tokens", "median s", "MB/s"])
  return metadata


def lm_part(args, work, results) -> None:
  rows = []
  for tokenizer in TOKENIZERS:
    data_dir = os.path.join(work, f"lm_{tokenizer}")
    metrics = train(data_dir, os.path.join(work, f"lm_model_{tokenizer}"), args.lm_steps,
                    os.path.join(work, f"lm_train_{tokenizer}.log"))
    bpc = bits_per_char(metrics, common.read_json(os.path.join(data_dir, "metadata.json")))
    results.setdefault("lm", {})[tokenizer] = {"eval_bits_per_char": bpc, "metrics": metrics}
    rows.append([tokenizer, args.lm_steps, f"{metrics['eval_loss']:.3f}", f"{metrics['eval_perplexity']:.1f}",
                 f"{bpc:.3f}"])
  common.report(f"LM after {args.lm_steps} steps", rows,
                ["tokenizer", "steps", "eval loss/token", "perplexity", "eval bits/char"])


def tag_part(args, work, results) -> None:
  rows = []
  for tokenizer in TOKENIZERS:
    data_dir = os.path.join(work, f"tag_{tokenizer}")
    _, tag_metadata = preprocess(args.tagged, data_dir, "conll", "tag", tokenizer, args.max_vocab,
                                 os.path.join(work, f"tag_{tokenizer}.log"))
    metrics = train(data_dir, os.path.join(work, f"tag_model_{tokenizer}"), args.tag_steps,
                    os.path.join(work, f"tag_train_{tokenizer}.log"), "--bidirectional")
    results.setdefault("tag", {})[tokenizer] = metrics
    rows.append([tokenizer, tag_metadata["vocab"]["size"], args.tag_steps,
                 f"{100 * metrics['eval_accuracy']:.2f}%"])
  common.report("Tagger on data/demo/tagged.conll (accuracy per word: continuation pieces carry no label)",
                rows, ["tokenizer", "vocab", "steps", "eval accuracy"])


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--corpus", required=True, help="prose, one record per line (benchmarks.corpus)")
  parser.add_argument("--tagged", default=os.path.join(common.REPO, "data", "demo", "tagged.conll"))
  parser.add_argument("--max_vocab", type=int, default=8000)
  parser.add_argument("--rounds", type=int, default=1, help="alternating word/wordpiece pipeline pairs")
  parser.add_argument("--lm_steps", type=int, default=300)
  parser.add_argument("--tag_steps", type=int, default=300)
  parser.add_argument("--parts", default="pipeline,lm,tag", help="which parts to run (lm reuses pipeline's output)")
  parser.add_argument("--work_dir", default="/tmp/wp/bench")
  parser.add_argument("--out", default=None, help="JSON results file")
  args = parser.parse_args()
  work = common.work_dir(args.work_dir)
  parts = args.parts.split(",")
  results = {"machine": common.machine(), "git": common.git_state(), "load_before": common.load_average()}
  if "pipeline" in parts:
    pipeline_part(args, work, results)
  if "lm" in parts:
    lm_part(args, work, results)
  if "tag" in parts:
    tag_part(args, work, results)
  results["load_after"] = common.load_average()
  if args.out:
    common.write_json(args.out, results)
  print(json.dumps({part: results.get(part) for part in ("pipeline", "lm", "tag") if part in results})[:2000])


if __name__ == "__main__":
  main()
