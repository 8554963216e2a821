r"""Checks an OUTPUT_DIR of pipeline.preprocess: the summary, decoded examples, a length plot.

Prints the task; examples, tokens and shards per split; vocabulary and label sizes; the
counts (read, written, filtered and dead letters by reason, truncated); length
percentiles per split; the optimal bucket boundaries for K = 4, 8, 16, 32 with their
padding waste. Then decodes the first N examples of a split back to tokens (and labels)
through vocab.txt and labels.txt, and draws the train length histogram with the
16-bucket boundaries to a PNG.

Examples:
  python -m pipeline.inspect out/ner
  python -m pipeline.inspect out/ner --split eval --n 20 --plot /tmp/ner_lengths.png

Reads the directory through contract.py with TensorFlow only (no Beam, no TFT), so it
starts quickly and works on gs:// paths as well.
"""

import argparse
import io
import os
import re
import sys
from typing import Dict, List, Mapping, Optional, Sequence

import quiet  # pylint: disable=unused-import  (first: before TensorFlow is imported)

import tensorflow as tf  # pylint: disable=g-import-not-at-top

import contract

PLOT_FILE = "lengths.png"  # pipeline.preprocess --overwrite knows this name
PLOT_BUCKETS = 16
PERCENTILES = (50, 90, 99)


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m pipeline.inspect", description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("output_dir", metavar="OUTPUT_DIR", help="the --output_dir of pipeline.preprocess")
  parser.add_argument("--split", choices=contract.SPLITS, default="train",
                      help="split whose first examples are decoded (default train)")
  parser.add_argument("--n", type=int, default=5, help="examples to decode (default 5)")
  parser.add_argument("--plot", metavar="PATH", default=None,
                      help=f"where the length histogram PNG goes (default OUTPUT_DIR/{PLOT_FILE})")
  return parser


def length_percentiles(histogram: Mapping[int, int]) -> Dict[str, Optional[int]]:
  """Nearest-rank percentiles (the smallest length covering p% of examples) and the max."""
  total = sum(histogram.values())
  result = {f"p{p}": None for p in PERCENTILES}
  result["max"] = max((length for length, n in histogram.items() if n), default=None)
  if not total:
    return result
  for p in PERCENTILES:
    rank = -(-p * total // 100)  # ceil without floats, so p99 of 100 examples is the 99th
    covered = 0
    for length, n in sorted(histogram.items()):
      covered += n
      if covered >= rank:
        result[f"p{p}"] = length
        break
  return result


def _by_reason(reasons: Mapping[str, int]) -> str:
  """{"empty": 2, "bad_json": 1} → "3 (bad_json 1, empty 2)"; {} → "0"."""
  total = str(sum(reasons.values()))
  if not reasons:
    return total
  return total + " (" + ", ".join(f"{reason} {n}" for reason, n in sorted(reasons.items())) + ")"


def summary_lines(output_dir: str, metadata: contract.Metadata) -> List[str]:
  """The part of the report a user checks first, as lines of text."""
  lines = [f"{output_dir}: task {metadata.task}, format {metadata.options.get('format', '?')}, "
           f"compression {metadata.options.get('compression', 'none')}"]

  header = ("split", "examples", "tokens", "shards", "p50", "p90", "p99", "max")
  rows = [header]
  for split in metadata.split_names:
    percentiles = length_percentiles(metadata.length_histogram.get(split, {}))
    rows.append((split, metadata.examples(split), metadata.tokens(split), len(metadata.shards(split)),
                 *("-" if percentiles[k] is None else percentiles[k] for k in ("p50", "p90", "p99", "max"))))
  widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
  for row in rows:
    lines.append("  " + "  ".join(str(cell).ljust(w) if i == 0 else str(cell).rjust(w)
                                   for i, (cell, w) in enumerate(zip(row, widths))))

  sizes = f"vocabulary {metadata.vocab_size} tokens"
  if metadata.label_size is not None:
    sizes += f", {metadata.label_size} labels"
  lines.append(sizes + f" (counting {contract.PAD_TOKEN} and {contract.UNK_TOKEN})")
  if metadata.tokenizer:
    unk = ", ".join(f"{split} {100 * rate:.3f}%" for split, rate in metadata.unk_rate.items())
    lines.append(f"tokenizer {metadata.tokenizer}; {contract.UNK_TOKEN} share of tokens: {unk}")

  counts = metadata.counts
  lines.append(f"counts: read {counts['read']}, written {counts['written']}, "
               f"filtered {_by_reason(counts['filtered'])}, dead letters {_by_reason(counts['dead_letter'])}, "
               f"truncated {counts['truncated']}")
  if counts["dead_letter"]:
    lines.append(f"  dead-letter records are in {os.path.join(output_dir, contract.ERRORS_DIR)}")

  lines.append("bucket boundaries on train lengths (bucket i holds lengths in (b(i-1), b(i)]):")
  for k in contract.NUM_BUCKETS_CHOICES:
    if k in metadata.bucket_boundaries:
      lines.append(f"  K={k:<2d} padding waste {100 * metadata.padding_waste[k]:5.2f}%: "
                   + " ".join(str(b) for b in metadata.bucket_boundaries[k]))
  return lines


def _lookup(vocabulary: Sequence[str], index: int) -> str:
  # An id past the vocabulary means the files disagree; show it rather than crash.
  return vocabulary[index] if 0 <= index < len(vocabulary) else f"<id {index}>"


def decode_example(task: str, context: dict, sequences: dict, token_vocab: Sequence[str],
                   label_vocab: Sequence[str], suffix: Optional[str] = None) -> str:
  """One parsed SequenceExample → one line.

  tag: `token/LABEL token/LABEL ...`; classify: `LABEL<TAB>token token ...` (a tab, as labels
  may hold spaces); lm: `token token ...`. With a WordPiece `suffix` (e.g. "##"), pieces are
  joined back into words first.
  """
  tokens = [_lookup(token_vocab, int(i)) for i in sequences[contract.TOKENS].numpy()]
  labels = [""] * len(tokens)
  if task == "tag":
    labels = [_lookup(label_vocab, int(i)) for i in sequences[contract.LABELS].numpy()]
  if suffix:
    tokens, labels = contract.join_pieces(tokens, labels, suffix)
  if task == "tag":
    return " ".join(f"{token}/{label}" for token, label in zip(tokens, labels))
  if task == "classify":
    return _lookup(label_vocab, int(context[contract.LABEL].numpy())) + "\t" + " ".join(tokens)
  return " ".join(tokens)


def example_lines(output_dir: str, metadata: contract.Metadata, split: str, n: int) -> List[str]:
  """The first n examples of a split, in shard order, decoded back to strings."""
  task = metadata.task
  paths = contract.shard_paths(output_dir, metadata.raw, split)
  if not paths:
    return [f"no {split} examples to show"]
  if n == 0:
    return []
  token_vocab = contract.read_vocab(metadata.vocab_path(output_dir))
  labels_path = metadata.labels_path(output_dir)
  label_vocab = contract.read_vocab(labels_path) if labels_path else []
  suffix = metadata.wordpiece_suffix
  context_spec, sequence_spec = contract.parsing_spec(task)
  # Shards in order, one file at a time: "the first N" is then the pipeline's own order.
  dataset = tf.data.TFRecordDataset(paths, compression_type=metadata.compression)
  decoded = []
  for index, serialized in enumerate(dataset.take(n)):
    context, sequences = tf.io.parse_single_sequence_example(serialized, context_spec, sequence_spec)
    decoded.append(f"  [{index}] " + decode_example(task, context, sequences, token_vocab, label_vocab, suffix))
  layout = {"tag": " (token/LABEL)", "classify": " (LABEL, then tokens)"}.get(task, "")
  if suffix:
    layout += f" (pieces joined into words at '{suffix}')"
  return [f"first {len(decoded)} of {metadata.examples(split)} {split} examples{layout}:"] + decoded


def plot_lengths(metadata: contract.Metadata, path: str) -> None:
  """Train length histogram as bars, with the 16-bucket boundaries as vertical lines."""
  # Imported here: choosing a backend is process-wide, and only the plot needs matplotlib.
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")  # no display needed, and none is opened
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  histogram = metadata.length_histogram["train"]
  figure, axes = plt.subplots(figsize=(10, 4.5))
  axes.bar(list(histogram), list(histogram.values()), width=1.0, color="tab:blue", edgecolor="white",
           linewidth=0.3, label="train examples")
  for index, boundary in enumerate(metadata.bucket_boundaries[PLOT_BUCKETS]):
    # A bucket holds lengths up to and including its boundary: draw the line just past that bar.
    axes.axvline(boundary + 0.5, color="tab:red", linewidth=0.8, linestyle="--",
                 label=f"{PLOT_BUCKETS}-bucket boundaries" if index == 0 else None)
  axes.set_xlabel("sequence length (tokens)")
  axes.set_ylabel("examples")
  axes.set_title(f"Train lengths ({sum(histogram.values())} examples): {PLOT_BUCKETS} buckets pad "
                 f"{100 * metadata.padding_waste[PLOT_BUCKETS]:.2f}% of slots")
  axes.legend()
  figure.tight_layout()
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png", dpi=100)
  plt.close(figure)
  # Through gfile, so a gs:// OUTPUT_DIR gets its plot too.
  if os.path.dirname(path):
    tf.io.gfile.makedirs(os.path.dirname(path))
  with tf.io.gfile.GFile(path, "wb") as f:
    f.write(buffer.getvalue())


def run(argv: Optional[Sequence[str]] = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  if args.n < 0:
    parser.error("--n must be >= 0")
  try:
    metadata = contract.load_metadata(args.output_dir)
  except contract.DataDirError as error:
    parser.error(str(error))  # exits 2 with the usage line and one clear line
  print("\n".join(summary_lines(args.output_dir, metadata)) + "\n")

  # From here on an error is about the data, not the command line: no usage line.
  try:
    print("\n".join(example_lines(args.output_dir, metadata, args.split, args.n)))
  except contract.DataDirError as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  except tf.errors.DataLossError as error:
    # TF's message leads with the op's internal name; the useful part is "corrupted record at N".
    found = re.search(r"(corrupted|truncated) record at \d+", error.message)
    print(f"error: a {args.split} shard is corrupt ({found.group(0) if found else error.message}); "
          "rerun pipeline.preprocess with --overwrite", file=sys.stderr)
    return 2

  plot_path = args.plot or os.path.join(args.output_dir, PLOT_FILE)
  try:
    plot_lengths(metadata, plot_path)
  except tf.errors.OpError as error:
    print(f"error: cannot write the plot to {plot_path}: {error.message}", file=sys.stderr)
    return 2
  print(f"\nLength histogram with the {PLOT_BUCKETS}-bucket boundaries: {plot_path}")
  return 0


def main():
  quiet.configure_logging("matplotlib")
  sys.exit(run())


if __name__ == "__main__":
  main()
