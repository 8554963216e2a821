r"""Raw corpora → sharded tf.train.SequenceExample TFRecords, with TensorFlow Transform.

    ReadCorpus | Split | Analyze                                  (train: the vocabularies)
    ReadCorpus | Split | Transform | EncodeSequenceExamples | WriteShards    (both splits)

Examples:
  # Plain text, one sequence per line, for a language model:
  python -m pipeline.preprocess --input 'corpus/*.txt' --output_dir out/lm \
      --format text --task lm

  # CoNLL (token ... label, blank line between sentences) for tagging, 2 local workers:
  python -m pipeline.preprocess --input data/train.conll --output_dir out/ner \
      --format conll --task tag --direct_num_workers 2 --direct_running_mode multi_processing

  # JSON lines {"text": ..., "label": ...} for classification, on Dataflow:
  python -m pipeline.preprocess --input 'gs://bucket/reviews/*.jsonl.gz' \
      --output_dir gs://bucket/out/reviews --format jsonl --task classify \
      --runner DataflowRunner --project P --region R --temp_location gs://bucket/tmp \
      --setup_file ./setup.py

Every option this parser does not know is an Apache Beam pipeline option (--runner,
--direct_num_workers, --project, --flink_master, ...). Without --runner (or with
--runner DirectRunner) the job runs in this process on Beam's Python FnApiRunner, so
nothing is downloaded.
"""

import argparse
import gc
import json
import logging
import os
import re
import sys
import time
from typing import List, Optional, Sequence

import quiet  # pylint: disable=unused-import  (first: before TensorFlow is imported)

import apache_beam as beam  # pylint: disable=g-import-not-at-top
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

import contract
from pipeline import counts
from pipeline import read
from pipeline import statistics
from pipeline import transform
from pipeline import write
from pipeline.config import PipelineConfig
from pipeline.encode import EncodeSequenceExamples

COUNTS_FILE = "counts.json"  # under OUTPUT_DIR/.tmp while the job runs

# What an OUTPUT_DIR may hold; --overwrite removes these and refuses anything else.
_OWN_ENTRIES = re.compile(
    r"^((train|eval)-\d{5}-of-\d{5}\.tfrecord(\.gz)?|vocab\.txt|labels\.txt|metadata\.json|"
    r"COMPLETED|transform_fn|transformed_metadata|errors|lengths\.png|\.tmp)$")


class UsageError(Exception):
  """A mistake in the command line or its inputs: exit 2 with one line."""


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m pipeline.preprocess", description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--input", action="append", required=True, metavar="GLOB",
                      help="input files (local or gs://); repeat for several globs; .gz is read transparently")
  parser.add_argument("--output_dir", required=True, help="where shards, vocabularies and metadata go")
  parser.add_argument("--format", required=True, choices=contract.FORMATS, dest="file_format")
  parser.add_argument("--task", required=True, choices=contract.TASKS)
  parser.add_argument("--eval_fraction", type=float, default=0.1,
                      help="share of records (by a stable hash of their content) in eval (default 0.1)")
  parser.add_argument("--num_shards", type=int, default=0,
                      help="train shards; 0 = automatic, about 128 MB each (default). "
                      "Eval shards are always sized automatically")
  parser.add_argument("--max_vocab", type=int, default=None,
                      help="vocabulary size cap, counting <pad> and <unk> (default: no cap)")
  parser.add_argument("--min_count", type=int, default=1,
                      help="drop tokens seen fewer times in train (they map to <unk>)")
  parser.add_argument("--max_length", type=int, default=512, help="truncate longer sequences (counted)")
  parser.add_argument("--lowercase", action=argparse.BooleanOptionalAction, default=False,
                      help="lowercase tokens (default: case is preserved)")
  parser.add_argument("--compression", choices=("none", "gzip"), default="none")
  parser.add_argument("--overwrite", action="store_true",
                      help="replace the output of an earlier run in --output_dir")
  parser.add_argument("--max_error_fraction", type=float, default=0.1,
                      help="fail (exit 2, no COMPLETED) if more than this share of records are dead letters")
  parser.add_argument("--max_record_bytes", type=int, default=1 << 20,
                      help="records longer than this are dead letters (default 1 MiB)")
  return parser


def match_inputs(globs: Sequence[str]) -> List[read.InputFile]:
  """Expands the globs, in a stable order; a glob that matches nothing is a usage error."""
  files = {}
  for pattern in globs:
    try:
      matched = FileSystems.match([pattern])[0].metadata_list
    except Exception as error:  # Beam raises BeamIOError for a missing directory
      raise UsageError(f"--input {pattern}: {error}") from None
    if not matched:
      raise UsageError(f"--input {pattern}: no file matches")
    for metadata in matched:
      files[metadata.path] = metadata.size_in_bytes
  return [read.InputFile(path, size) for path, size in sorted(files.items())]


def check_config(config: PipelineConfig) -> None:
  if config.file_format == "text" and config.task != "lm":
    raise UsageError("--format text has no labels: use --task lm, or jsonl/conll for tag and classify")
  if config.file_format == "conll" and config.task == "classify":
    raise UsageError("--format conll has one label per token: use --task tag (or lm)")
  if not 0.0 <= config.eval_fraction < 1.0:
    raise UsageError("--eval_fraction must be in [0, 1)")
  if config.max_vocab is not None and config.max_vocab <= contract.NUM_RESERVED:
    raise UsageError(f"--max_vocab must be above {contract.NUM_RESERVED} (it counts <pad> and <unk>)")
  if config.max_length < 1 or config.min_count < 1 or config.num_shards < 0:
    raise UsageError("--max_length and --min_count must be >= 1, --num_shards >= 0")


def prepare_output_dir(output_dir: str, overwrite: bool) -> None:
  """Refuses a non-empty directory unless --overwrite; then removes only our own files."""
  if not tf.io.gfile.exists(output_dir):
    tf.io.gfile.makedirs(output_dir)
    return
  entries = sorted(name.rstrip("/") for name in tf.io.gfile.listdir(output_dir))
  if not entries:
    return
  if not overwrite:
    raise UsageError(f"--output_dir {output_dir} is not empty; pass --overwrite to replace it")
  foreign = [name for name in entries if not _OWN_ENTRIES.match(name)]
  if foreign:
    raise UsageError(f"--output_dir {output_dir} holds {foreign[0]}, which this pipeline did not write; "
                     "refusing to overwrite it")
  if contract.COMPLETED_FILE in entries:  # first, so an interrupted cleanup is never "complete"
    tf.io.gfile.remove(os.path.join(output_dir, contract.COMPLETED_FILE))
  for name in entries:
    path = os.path.join(output_dir, name)
    if tf.io.gfile.isdir(path):
      tf.io.gfile.rmtree(path)
    elif tf.io.gfile.exists(path):
      tf.io.gfile.remove(path)


def pipeline_options(pipeline_args: Sequence[str]) -> PipelineOptions:
  options = PipelineOptions(list(pipeline_args))
  standard = options.view_as(StandardOptions)
  if standard.runner in (None, "DirectRunner"):
    # DirectRunner may first try Prism, a runner binary it downloads; run in Python instead.
    standard.runner = "FnApiRunner"
  return options


def build_pipeline(pipeline: beam.Pipeline, config: PipelineConfig,
                   input_files: Sequence[read.InputFile]) -> None:
  """ReadCorpus | Split | Analyze, then ReadCorpus | Split | Transform | Encode... | WriteShards.

  The files are read twice, which costs far less than keeping what was read: once to learn
  the vocabularies (the train split) and size the shards, then again to transform,
  encode and write both splits, counting every record this time. So no stage waits
  for the whole corpus to be held, on any runner, and local worker processes send paths,
  not records, back to the runner (see pipeline/write.py).
  """
  temp_dir = os.path.join(config.output_dir, write.TEMP_DIR)
  # TFT's adaptive batching starts at a handful of rows: fix it at our batch size, so
  # each graph run (and each encode call after it) works on thousands of records.
  with tft_beam.Context(temp_dir=os.path.join(temp_dir, "tft"), desired_batch_size=read.BATCH_SIZE):
    first_read = (
        pipeline
        | "ReadCorpusToAnalyze" >> read.ReadCorpus(
            input_files, config.file_format, config.task, config.max_record_bytes, report=False)).records
    analyzed = first_read | "SplitToAnalyze" >> read.Split(config.eval_fraction)
    transform_fn = analyzed["train"] | "Analyze" >> transform.Analyze(config)
    corpus = pipeline | "ReadCorpus" >> read.ReadCorpus(
        input_files, config.file_format, config.task, config.max_record_bytes)
    splits = corpus.records | "Split" >> read.Split(config.eval_fraction)
    all_counts = [corpus[counts.COUNTS],
                  corpus[counts.DEAD_LETTER] | "WriteDeadLetters" >> write.WriteDeadLetters(config.output_dir)]
    for split in contract.SPLITS:
      transformed = splits[split] | f"Transform[{split}]" >> transform.Transform(config, transform_fn)
      encoded = transformed | f"Encode[{split}]" >> EncodeSequenceExamples(config.task, split)
      num_shards = analyzed[split] | f"ShardCount[{split}]" >> write.ShardCount(
          config.num_shards if split == "train" else 0)  # eval: sized automatically
      written = encoded.serialized | f"WriteShards[{split}]" >> write.WriteShards(
          config.output_dir, split, num_shards, config.compression)
      all_counts += [encoded[counts.COUNTS], written]
    _ = (tuple(all_counts) | "FlattenCounts" >> beam.Flatten()
         | "GatherCounts" >> statistics.GatherCounts(os.path.join(temp_dir, COUNTS_FILE)))


def log_counters(result) -> None:
  """Logs the job's Beam counters (records read, written, filtered, dead-lettered)."""
  try:
    counters = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(counts.NAMESPACE))["counters"]
  except (NotImplementedError, KeyError, ValueError):  # some runners report no metrics
    return
  totals = {}
  for counter in counters:
    totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + (counter.committed or counter.attempted or 0)
  if totals:
    logging.info("Beam counters: %s", ", ".join(f"{name}={n}" for name, n in sorted(totals.items())))


def _write_vocab(config: PipelineConfig, asset_name: str, file_name: str) -> dict:
  """transform_fn/assets/NAME (real entries) → OUTPUT_DIR/FILE with <pad>, <unk> first."""
  asset = os.path.join(config.output_dir, contract.TRANSFORM_FN_DIR, "assets", asset_name)
  entries = contract.read_vocab(asset) if tf.io.gfile.exists(asset) else []
  with tf.io.gfile.GFile(os.path.join(config.output_dir, file_name), "w") as f:
    f.write("".join(entry + "\n" for entry in list(contract.RESERVED_TOKENS) + entries))
  return {"file": file_name, "size": len(entries) + contract.NUM_RESERVED,
          "pad_id": contract.PAD_ID, "unk_id": contract.UNK_ID}


def finalize(config: PipelineConfig, input_files: Sequence[read.InputFile]) -> dict:
  """Counts → metadata.json, vocabularies; COMPLETED last unless the error budget is blown."""
  temp_dir = os.path.join(config.output_dir, write.TEMP_DIR)
  with tf.io.gfile.GFile(os.path.join(temp_dir, COUNTS_FILE)) as f:
    summary = statistics.summarize(json.load(f))
  statistics.check_identity(summary)
  if not summary["splits"]["train"]["examples"]:
    raise UsageError(f"no training examples: all {summary['counts']['read']} records read were filtered, "
                     "dead letters or eval; check --input, --format and --eval_fraction")
  histogram = {int(l): n for l, n in summary["length_histogram"]["train"].items()}
  metadata = {
      "format_version": contract.FORMAT_VERSION,
      "task": config.task,
      "features": contract.feature_spec(config.task),
      "vocab": _write_vocab(config, transform.TOKEN_VOCAB_NAME, contract.VOCAB_FILE),
  }
  if config.task in ("tag", "classify"):
    metadata["labels"] = _write_vocab(config, transform.LABEL_VOCAB_NAME, contract.LABELS_FILE)
  for split in summary["splits"].values():  # sizes let readers detect truncated or altered shards
    for shard in split["shards"]:
      shard["bytes"] = tf.io.gfile.stat(os.path.join(config.output_dir, shard["file"])).length
  metadata.update(summary)
  metadata["bucket_boundaries"] = statistics.bucket_table(histogram)
  metadata["options"] = config.options()
  metadata["versions"] = statistics.versions()
  metadata["inputs"] = [{"file": f.path, "size": f.size} for f in input_files]
  metadata["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
  with tf.io.gfile.GFile(os.path.join(config.output_dir, contract.METADATA_FILE), "w") as f:
    json.dump(metadata, f, indent=1, ensure_ascii=False)
  tf.io.gfile.rmtree(temp_dir)

  record_counts = metadata["counts"]
  dead = sum(record_counts["dead_letter"].values())
  if record_counts["read"] and dead / record_counts["read"] > config.max_error_fraction:
    raise UsageError(
        f"{dead} of {record_counts['read']} records are dead letters, over --max_error_fraction "
        f"{config.max_error_fraction}; see {os.path.join(config.output_dir, contract.ERRORS_DIR)}")
  with tf.io.gfile.GFile(os.path.join(config.output_dir, contract.COMPLETED_FILE), "w") as f:
    f.write(metadata["created"] + "\n")
  return metadata


def run(argv: Optional[Sequence[str]] = None) -> int:
  parser = build_parser()
  known, pipeline_args = parser.parse_known_args(argv)
  config = PipelineConfig(
      inputs=tuple(known.input), output_dir=known.output_dir, file_format=known.file_format,
      task=known.task, eval_fraction=known.eval_fraction, num_shards=known.num_shards,
      max_vocab=known.max_vocab, min_count=known.min_count, max_length=known.max_length,
      lowercase=known.lowercase, compression=known.compression,
      max_error_fraction=known.max_error_fraction, max_record_bytes=known.max_record_bytes)
  try:
    check_config(config)
    input_files = match_inputs(config.inputs)
    prepare_output_dir(config.output_dir, known.overwrite)
    options = pipeline_options(pipeline_args)
  except UsageError as error:
    parser.error(str(error))  # exits 2 with the usage line and one clear line

  logging.info("Reading %d files (%d bytes) into %s", len(input_files),
               sum(f.size for f in input_files), config.output_dir)
  pipeline = beam.Pipeline(options=options)
  build_pipeline(pipeline, config, input_files)
  # Hundreds of thousands of long-lived objects (TF, Beam, TFT) make each full garbage
  # collection slow, and per-record work triggers many: measured 1.8-2.3 s of a 10 MB
  # run. Freeze what exists now and collect less often.
  gc.collect()
  gc.freeze()
  gc.set_threshold(50_000, 20, 100)
  result = pipeline.run()
  result.wait_until_finish()
  log_counters(result)
  try:  # errors past this point are about the data, not the command line: no usage line
    metadata = finalize(config, input_files)
  except UsageError as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  c = metadata["counts"]
  splits = metadata["splits"]
  print(f"Wrote {splits['train']['examples']} train and {splits['eval']['examples']} eval examples "
        f"({c['read']} read, {sum(c['filtered'].values())} filtered, "
        f"{sum(c['dead_letter'].values())} dead letters, {c['truncated']} truncated) to {config.output_dir}")
  return 0


def main():
  logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
  for noisy in ("apache_beam", "absl", "tensorflow"):
    logging.getLogger(noisy).setLevel(logging.WARNING)
  code = run()
  # The job is finished and every file closed. Beam's in-process runners leave daemon
  # threads behind (gRPC, SDK workers that ran TF ops); tearing them down at interpreter
  # exit can abort the process after a successful run ("terminate called after throwing
  # an instance of ''", seen once in CI with the PortableRunner), so leave without it.
  logging.shutdown()
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(code)


if __name__ == "__main__":
  main()
