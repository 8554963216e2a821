"""--tokenizer wordpiece next to word: unk rate, pipeline throughput, LM bits per char, tagger accuracy.

    python -m benchmarks.corpus --corpus_mb 10 --out /tmp/wp/corpus.txt
    python -m benchmarks.wordpiece --corpus /tmp/wp/corpus.txt --rounds 2 --lm_steps 300 --tag_steps 300

Pipeline runs alternate word / wordpiece (`--rounds` pairs) and the throughput ratio is of the
medians; the LM and the tagger train the same steps with the same flags on both outputs.
"""

import logging
import os
import shutil
import statistics as stats
import sys

import quiet  # pylint: disable=unused-import  (first: before TensorFlow is imported)
import contract
from benchmarks import common

TOKENIZERS = ("word", "wordpiece")


def preprocess(corpus, out_dir, file_format, task, tokenizer, max_vocab, log):
  timing = common.preprocess(corpus, out_dir, "--format", file_format, "--task", task, "--max_vocab", max_vocab,
                             "--tokenizer", tokenizer, log_path=log)
  return timing, contract.load_metadata(out_dir)


def train(data_dir, model_dir, steps, *extra) -> dict:
  shutil.rmtree(model_dir, ignore_errors=True)
  common.run_timed(common.python_module(
      "trainer.task", "--data_dir", data_dir, "--model_dir", model_dir, "--train_steps", steps,
      "--eval_every", steps, "--checkpoint_every", steps, "--seed", 1, *extra), log_path=model_dir + ".log")
  return common.read_json(os.path.join(model_dir, "metrics.json"))


def pipeline_part(args, work) -> dict:
  """Alternating word / wordpiece runs of the LM pipeline on the prose corpus."""
  seconds = {t: [] for t in TOKENIZERS}
  metadata = {}
  for round_index in range(args.rounds):
    for tokenizer in TOKENIZERS:
      out_dir = os.path.join(work, f"lm_{tokenizer}")
      timing, metadata[tokenizer] = preprocess(args.corpus, out_dir, "text", "lm", tokenizer, args.max_vocab,
                                               f"{out_dir}_{round_index}.log")
      seconds[tokenizer].append(timing["seconds"])
      logging.info("pipeline %s round %d: %s s", tokenizer, round_index, timing["seconds"])
  corpus_mb = os.path.getsize(args.corpus) / 1e6
  median = {t: stats.median(seconds[t]) for t in TOKENIZERS}
  rows = [[t, m.vocab_size, f"{100 * m.unk_rate['eval']:.3f}%", f"{100 * m.unk_rate['train']:.3f}%",
           m.tokens("eval"), f"{median[t]:.1f}", f"{corpus_mb / median[t]:.3f}"] for t, m in metadata.items()]
  ratio = median["word"] / median["wordpiece"]
  common.report(f"Pipeline on {corpus_mb:.1f} MB prose, --max_vocab {args.max_vocab} "
                f"(throughput wordpiece/word = {ratio:.2f})", rows,
                ["tokenizer", "vocab", "eval unk", "train unk", "eval tokens", "median s", "MB/s"])
  return {"seconds": seconds, "throughput_ratio_wordpiece_over_word": round(ratio, 3),
          "unk_rate": {t: dict(m.unk_rate) for t, m in metadata.items()}}


def lm_part(args, work) -> dict:
  results, rows = {}, []
  for tokenizer in TOKENIZERS:
    data_dir = os.path.join(work, f"lm_{tokenizer}")
    # Bits per character: the total eval log-loss over the eval text's characters, the same
    # denominator for both tokenizers (the trainer reports it from metadata.json).
    results[tokenizer] = metrics = train(data_dir, os.path.join(work, f"lm_model_{tokenizer}"), args.lm_steps)
    rows.append([tokenizer, args.lm_steps, f"{metrics['eval_loss']:.3f}", f"{metrics['eval_perplexity']:.1f}",
                 f"{metrics['eval_bits_per_char']:.3f}"])
  common.report(f"LM after {args.lm_steps} steps", rows,
                ["tokenizer", "steps", "eval loss/token", "perplexity", "eval bits/char"])
  return results


def tag_part(args, work) -> dict:
  results, rows = {}, []
  for tokenizer in TOKENIZERS:
    data_dir = os.path.join(work, f"tag_{tokenizer}")
    _, metadata = preprocess(args.tagged, data_dir, "conll", "tag", tokenizer, args.max_vocab, data_dir + ".log")
    results[tokenizer] = train(data_dir, os.path.join(work, f"tag_model_{tokenizer}"), args.tag_steps,
                               "--bidirectional")
    rows.append([tokenizer, metadata.vocab_size, args.tag_steps, f"{100 * results[tokenizer]['eval_accuracy']:.2f}%"])
  common.report("Tagger on data/demo/tagged.conll (accuracy per word: continuation pieces carry no label)",
                rows, ["tokenizer", "vocab", "steps", "eval accuracy"])
  return results


def measure(args) -> dict:
  work = common.work_dir(args.work_dir)
  results = {"machine": common.machine(), "load_before": common.load_average()}
  for part, run in (("pipeline", pipeline_part), ("lm", lm_part), ("tag", tag_part)):
    if part in args.parts.split(","):
      results[part] = run(args, work)
  return {**results, "load_after": common.load_average()}


def main(argv=None):
  return common.main(__doc__, {None: (measure, lambda results: None, None, [
      (["--corpus"], {"required": True, "help": "prose, one record per line (benchmarks.corpus)"}),
      (["--tagged"], {"default": os.path.join(common.REPO, "data", "demo", "tagged.conll")}),
      (["--max_vocab"], {"type": int, "default": 8000}),
      (["--rounds"], {"type": int, "default": 1, "help": "alternating word/wordpiece pipeline pairs"}),
      (["--lm_steps"], {"type": int, "default": 300}),
      (["--tag_steps"], {"type": int, "default": 300}),
      (["--parts"], {"default": "pipeline,lm,tag", "help": "which parts to run (lm reuses pipeline's output)"}),
      (["--work_dir"], {"default": "/tmp/wp/bench"})])}, argv=argv)


if __name__ == "__main__":
  sys.exit(main())
