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

Every other option must be an Apache Beam pipeline option (--runner,
--direct_num_workers, --project, --flink_master, ...); one that neither this parser nor
Beam knows is a usage error. Without --runner (or with --runner DirectRunner) the job
runs in this process on Beam's Python FnApiRunner, so nothing is downloaded.
"""

import argparse
import dataclasses
import difflib
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
from apache_beam.options import pipeline_options as beam_options
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

import contract
from pipeline import arrow
from pipeline import chars as chars_lib
from pipeline import config as config_lib
from pipeline import counts
from pipeline import lines
from pipeline import read
from pipeline import statistics
from pipeline import transform
from pipeline import vocabulary
from pipeline import write
from pipeline.config import PipelineConfig
from pipeline.encode import EncodeSequenceExamples
from pipeline.split import Split

# Dead letters that suggest the files are in another encoding (UTF-16 read as UTF-8 is
# full of NUL bytes).
_WRONG_ENCODING_REASONS = ("undecodable", "nul_byte")
COUNTS_FILE = "counts.json"  # under OUTPUT_DIR/.tmp while the job runs

# What an OUTPUT_DIR may hold; --overwrite removes these and refuses anything else.
_OWN_ENTRIES = re.compile(
    r"^((train|eval)-\d{5}-of-\d{5}\.tfrecord(\.gz)?|vocab\.txt|labels\.txt|chars\.txt|vocab_counts\.txt|"
    r"metadata\.json|"
    r"COMPLETED|transform_fn|transformed_metadata|errors|lengths\.png|\.tmp)$")


class UsageError(Exception):
  """A mistake in the command line or its inputs: exit 2 with one line."""


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m pipeline.preprocess", description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  config_lib.add_flags(parser)
  parser.add_argument("--overwrite", action="store_true",
                      help="replace the output of an earlier run in --output_dir")
  quiet.add_flag(parser)  # --verbose: also logs progress and shows the traceback of an error
  return parser


def beam_option_parser() -> argparse.ArgumentParser:
  """A parser that knows every Beam pipeline option, collected as Beam collects them."""
  parser = beam_options._BeamArgumentParser(allow_abbrev=False)  # pylint: disable=protected-access
  subclasses = {}  # as PipelineOptions.get_all_options: the last of each name wins
  for cls in PipelineOptions.__subclasses__():
    subclasses.setdefault(str(cls), cls)
  for cls in subclasses.values():
    cls._add_argparse_args(parser)  # pylint: disable=protected-access
  return parser


def check_pipeline_args(pipeline_args: Sequence[str], parser: argparse.ArgumentParser) -> None:
  """Refuses what is left after our flags if Beam does not know it either (a typo)."""
  beam_parser = beam_option_parser()
  _, unknown = beam_parser.parse_known_args(list(pipeline_args))
  if not unknown:
    return
  name = next((arg for arg in unknown if arg.startswith("-")), unknown[0])
  if not name.startswith("-"):
    raise UsageError(f"unexpected argument {name!r}")
  name = name.split("=", 1)[0]
  known = [option for p in (parser, beam_parser) for action in p._actions  # pylint: disable=protected-access
           for option in action.option_strings if option.startswith("--")]
  close = difflib.get_close_matches(name, known, n=1)
  raise UsageError(f"unknown option {name}" + (f" (did you mean {close[0]}?)" if close else "")
                   + "; it is neither a pipeline option nor an Apache Beam one")


def _is_glob(pattern: str) -> bool:
  return any(char in pattern for char in "*?[")


def _is_local(path: str) -> bool:
  return "://" not in path


def _matches(pattern: str):
  """(path, size) of each file `pattern` names: a file, the files directly inside a
  directory (not hidden), or a glob's matches that are files."""
  is_dir = tf.io.gfile.isdir(pattern)
  try:
    matched = FileSystems.match([os.path.join(pattern, "*") if is_dir else pattern])[0].metadata_list
  except Exception as error:  # pylint: disable=broad-except  # Beam raises BeamIOError
    raise UsageError(f"--input {pattern}: {error}") from None
  found = []
  for metadata in matched:
    path = metadata.path
    if is_dir and os.path.basename(path.rstrip("/")).startswith("."):
      continue
    if path.endswith("/") or (_is_local(path) and os.path.isdir(path)):
      continue  # a glob or directory names files; a directory inside is not read
    if is_dir and _is_local(path) and not os.path.isfile(path):
      continue  # nor a FIFO or socket in a directory
    found.append((path, metadata.size_in_bytes))
  if not found:
    what = "directory holds no regular, non-hidden file" if is_dir else (
        "no file matches" if _is_glob(pattern) else "no such file")
    raise UsageError(f"--input {pattern}: {what}")
  return found


def _check_readable(path: str) -> None:
  """A local input that is not a regular file, or cannot be opened, is named now, not
  found halfway through the job."""
  if not _is_local(path):
    return
  if not os.path.isfile(path):
    raise UsageError(f"--input {path}: not a regular file")
  try:
    with open(path, "rb") as f:
      f.read(1)
  except OSError as error:
    raise UsageError(f"--input {path}: cannot be read ({error.strerror or error})") from None


def match_inputs(patterns: Sequence[str]) -> List[lines.InputFile]:
  """Expands files, directories and globs, in a stable order; see `_matches`.

  A pattern that names no file, and an input that cannot be read, are usage errors.
  """
  files = {}
  for pattern in patterns:
    for path, size in _matches(pattern):
      files[path] = size
  for path in files:
    _check_readable(path)
  return [lines.InputFile(path, size) for path, size in sorted(files.items())]


def check_config(config: PipelineConfig) -> None:
  if config.file_format == "text" and config.task != "lm":
    raise UsageError("--format text has no labels: use --task lm, or jsonl/conll for tag and classify")
  if config.file_format == "conll" and config.task == "classify":
    raise UsageError("--format conll has one label per token: use --task tag (or lm)")
  try:
    lines.is_utf8(config.encoding)
  except LookupError:
    raise UsageError(f"--encoding {config.encoding}: not an encoding Python knows") from None
  if not 0.0 <= config.eval_fraction < 1.0:
    raise UsageError("--eval_fraction must be in [0, 1)")
  if config.max_vocab is not None and config.max_vocab <= contract.NUM_RESERVED:
    raise UsageError(f"--max_vocab must be above {contract.NUM_RESERVED} (it counts <pad> and <unk>)")
  if config.max_length < 1 or config.min_count < 1 or config.num_shards < 0 or config.vocab_partitions < 0:
    raise UsageError("--max_length and --min_count must be >= 1, --num_shards and --vocab_partitions >= 0")
  if config.max_token_chars < 1 or (config.max_chars is not None and config.max_chars <= contract.NUM_RESERVED):
    raise UsageError(f"--max_token_chars must be >= 1, --max_chars above {contract.NUM_RESERVED} (it counts <pad>, <unk>)")


def prepare_output_dir(output_dir: str, overwrite: bool) -> None:
  """Refuses a non-empty directory unless --overwrite; then removes only our own files.

  Then makes OUTPUT_DIR/.tmp, so that a directory that cannot be written (a file, a
  read-only file system) is a usage error now rather than a failure in the job.
  """
  if tf.io.gfile.exists(output_dir) and not tf.io.gfile.isdir(output_dir):
    raise UsageError(f"--output_dir {output_dir} is a file, not a directory")
  try:
    _clear_output_dir(output_dir, overwrite)
    tf.io.gfile.makedirs(os.path.join(output_dir, write.TEMP_DIR))
  except (OSError, tf.errors.OpError) as error:
    reason = getattr(error, "message", None) or getattr(error, "strerror", None) or str(error)
    raise UsageError(f"--output_dir {output_dir}: cannot write there ({reason})") from None


def _clear_output_dir(output_dir: str, overwrite: bool) -> None:
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
                   input_files: Sequence[lines.InputFile]) -> None:
  """ReadCorpus | Split | Analyze, then ReadCorpus | Split | Transform | Encode... | WriteShards.

  The files are read twice, which costs far less than keeping what was read: once to learn
  the vocabularies (the train split) and size the shards, then again to transform,
  encode and write both splits, counting every record this time. So no stage waits
  for the whole corpus to be held, on any runner. Local worker processes send paths of
  runs, not records, back to the runner; other runners shuffle the records to their
  shards (`--shard_writer`, see pipeline/write.py).
  """
  temp_dir = os.path.join(config.output_dir, write.TEMP_DIR)
  config = dataclasses.replace(config, vocab_partitions=vocabulary.partition_count(
      config.vocab_partitions, sum(f.size for f in input_files)))
  shard_writer = write.shard_writer_for(config.shard_writer, pipeline.runner)
  logging.info("Records go to their shards through %s (--shard_writer %s on %s)",
               "temporary run files" if shard_writer == write.RUNS else "the runner's shuffle",
               config.shard_writer, type(pipeline.runner).__name__)
  # TFT's adaptive batching starts at a handful of rows: fix it at our batch size, so
  # each graph run (and each encode call after it) works on thousands of records.
  with tft_beam.Context(temp_dir=os.path.join(temp_dir, "tft"), desired_batch_size=arrow.BATCH_SIZE):
    first_read = (
        pipeline
        | "ReadCorpusToAnalyze" >> read.ReadCorpus(
            input_files, config.file_format, config.task, config.max_record_bytes, report=False,
            encoding=config.encoding)).records
    analyzed = first_read | "SplitToAnalyze" >> Split(config.eval_fraction)
    transform_fn = analyzed["train"] | "Analyze" >> transform.Analyze(config)
    corpus = pipeline | "ReadCorpus" >> read.ReadCorpus(
        input_files, config.file_format, config.task, config.max_record_bytes, encoding=config.encoding)
    splits = corpus.records | "Split" >> Split(config.eval_fraction)
    all_counts = [corpus[counts.COUNTS],
                  corpus[counts.DEAD_LETTER] | "WriteDeadLetters" >> write.WriteDeadLetters(config.output_dir)]
    for split in contract.SPLITS:
      transformed = splits[split] | f"Transform[{split}]" >> transform.Transform(config, transform_fn)
      encoded = transformed | f"Encode[{split}]" >> EncodeSequenceExamples(config.task, split, config.with_chars)
      num_shards = analyzed[split] | f"ShardCount[{split}]" >> write.ShardCount(
          config.num_shards if split == "train" else 0)  # eval: sized automatically
      written = encoded.serialized | f"WriteShards[{split}]" >> write.WriteShards(
          config.output_dir, split, num_shards, config.compression, shard_writer)
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



def finalize(config: PipelineConfig, input_files: Sequence[lines.InputFile]) -> dict:
  """Counts → metadata.json, vocabularies; COMPLETED last unless the error budget is blown."""
  temp_dir = os.path.join(config.output_dir, write.TEMP_DIR)
  with tf.io.gfile.GFile(os.path.join(temp_dir, COUNTS_FILE)) as f:
    totals = json.load(f)
  summary = statistics.summarize(totals)
  if config.with_chars:
    summary["counts"]["truncated_chars"] = totals.get(counts.TRUNCATED_CHARS, 0)
  statistics.check_identity(summary)
  if not summary["splits"]["train"]["examples"]:
    raise UsageError(f"no training examples: all {summary['counts']['read']} records read were filtered, "
                     "dead letters or eval; check --input, --format and --eval_fraction")
  histogram = {int(l): n for l, n in summary["length_histogram"]["train"].items()}
  metadata = {
      "format_version": contract.FORMAT_VERSION,
      "task": config.task,
      "features": contract.feature_spec(config.task, config.with_chars),
      "vocab": _write_vocab(config, transform.TOKEN_VOCAB_NAME, contract.VOCAB_FILE),
  }
  if config.task in ("tag", "classify"):
    metadata["labels"] = _write_vocab(config, transform.LABEL_VOCAB_NAME, contract.LABELS_FILE)
  if config.with_chars:
    metadata["chars"] = chars_lib.metadata(_write_vocab(config, chars_lib.CHAR_VOCAB_NAME, contract.CHARS_FILE)["size"],
                                           config.max_token_chars)
  if vocabulary.write_counts(transform.vocab_counts_path(config.output_dir), config.output_dir,
                             totals.get(counts.key(counts.UNKNOWN, "train"), 0)):
    metadata["vocab"]["counts_file"] = contract.VOCAB_COUNTS_FILE
  for split in summary["splits"].values():  # sizes let readers detect truncated or altered shards
    for shard in split["shards"]:
      shard["bytes"] = tf.io.gfile.stat(os.path.join(config.output_dir, shard["file"])).length
  metadata.update(summary)
  metadata["tokenizer"] = transform.tokenizer_metadata(config)
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
    undecodable = sum(record_counts["dead_letter"].get(reason, 0) for reason in _WRONG_ENCODING_REASONS)
    hint = (f"; {undecodable} do not decode as {config.encoding}: is --encoding right?"
            if undecodable else "")
    raise UsageError(
        f"{dead} of {record_counts['read']} records are dead letters, over --max_error_fraction "
        f"{config.max_error_fraction}{hint}; see {os.path.join(config.output_dir, contract.ERRORS_DIR)}")
  with tf.io.gfile.GFile(os.path.join(config.output_dir, contract.COMPLETED_FILE), "w") as f:
    f.write(metadata["created"] + "\n")
  return metadata


def job_error_line(error: Exception) -> str:
  """One line for a job that failed: the innermost error Beam's message carries."""
  text = str(error)
  found = re.findall(r"((?:\w+\.)*\w*(?:Error|Exception): [^\n]+)", text)
  found = [line for line in found if not line.startswith("RuntimeError: ")] or found
  line = found[-1] if found else (text.strip().splitlines() or [type(error).__name__])[-1]
  return re.sub(r" \[while running '[^']*'\]$", "", line.split("\n")[0]).strip()


def run(argv: Optional[Sequence[str]] = None) -> int:
  parser = build_parser()
  known, pipeline_args = parser.parse_known_args(argv)
  if not known.verbose:  # a failed job is our one error line, not Beam's logged tracebacks
    logging.getLogger("apache_beam").setLevel(logging.CRITICAL)
  config = config_lib.from_flags(known)
  try:
    check_pipeline_args(pipeline_args, parser)
    check_config(config)
    input_files = match_inputs(config.inputs)
    prepare_output_dir(config.output_dir, known.overwrite)
    options = pipeline_options(pipeline_args)
  except UsageError as error:
    if known.verbose:
      logging.exception("usage error")
    parser.error(str(error))  # exits 2 with the usage line and one clear line

  logging.info("Reading %d files (%d bytes) into %s", len(input_files),
               sum(f.size for f in input_files), config.output_dir)
  pipeline = beam.Pipeline(options=options)
  build_pipeline(pipeline, config, input_files)
  # Hundreds of thousands of long-lived objects (TF, Beam, TFT) make each full garbage
  # collection slow, and per-record work triggers many. Freeze what exists now and
  # collect less often.
  gc.collect()
  gc.freeze()
  gc.set_threshold(50_000, 20, 100)
  try:
    result = pipeline.run()
    result.wait_until_finish()
  except Exception as error:  # pylint: disable=broad-except  # no COMPLETED: a rerun starts over
    if known.verbose:
      raise
    print(f"error: the job failed: {job_error_line(error)} (--verbose shows the traceback)", file=sys.stderr)
    return 1
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
