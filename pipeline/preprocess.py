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
import logging
import os
import re
import sys
from typing import Optional, Sequence

import quiet  # pylint: disable=unused-import  (first: before TensorFlow is imported)

import apache_beam as beam  # pylint: disable=g-import-not-at-top
import tensorflow_transform.beam as tft_beam
from apache_beam.options import pipeline_options as beam_options
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

import contract
from corpus import files
from corpus import records
from pipeline import arrow
from pipeline import config as config_lib
from pipeline import counts
from pipeline import output_dir as output_dir_lib
from pipeline import read
from pipeline import runners
from pipeline import statistics
from pipeline import transform
from pipeline import vocabulary
from pipeline import split as split_lib
from pipeline import write
from pipeline.config import PipelineConfig, UsageError
from pipeline.encode import EncodeSequenceExamples
from pipeline.inputs import InputFiles, match_input_files
from pipeline.split import Split

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


def check_config(config: PipelineConfig) -> None:
  if config.file_format == "text" and config.task != "lm":
    raise UsageError("--format text has no labels: use --task lm, or jsonl/conll/parquet for tag and classify")
  if config.file_format in ("conll", "conllu") and config.task == "classify":
    raise UsageError(f"--format {config.file_format} has one label per token: use --task tag (or lm)")
  if config.label_column is not None:
    if config.file_format not in ("conll", "conllu"):
      raise UsageError(f"--label_column is for --format conll and conllu, not {config.file_format}")
    try:
      records.label_column_index(config.label_column, config.file_format)
    except ValueError as error:
      raise UsageError(str(error)) from None
  try:
    files.is_utf8(config.encoding)
  except LookupError:
    raise UsageError(f"--encoding {config.encoding}: not an encoding Python knows") from None
  if not 0.0 <= config.eval_fraction < 1.0:
    raise UsageError("--eval_fraction must be in [0, 1)")
  reserved = contract.reserved_tokens(config.task)
  if config.max_vocab is not None and config.max_vocab <= len(reserved):
    raise UsageError(f"--max_vocab must be above {len(reserved)} (it counts {', '.join(reserved)})")
  if config.max_length < 1 or config.min_count < 1 or config.num_shards < 0 or config.vocab_partitions < 0:
    raise UsageError("--max_length and --min_count must be >= 1, --num_shards and --vocab_partitions >= 0")
  if config.max_token_chars < 1 or (config.max_chars is not None and config.max_chars <= contract.NUM_RESERVED):
    raise UsageError(f"--max_token_chars must be >= 1, --max_chars above {contract.NUM_RESERVED} (it counts <pad>, <unk>)")


def explicit_flags(argv: Optional[Sequence[str]]) -> set:
  """The dests of the pipeline's flags given on the command line (not left at their default)."""
  parser = build_parser()
  for action in parser._actions:  # pylint: disable=protected-access
    action.default = argparse.SUPPRESS
    action.required = False
  given, _ = parser.parse_known_args(argv)
  return set(vars(given))


def with_vocab_from(config: PipelineConfig, given: set) -> PipelineConfig:
  """The config with the transform options of --vocab_from's run (config_lib.TRANSFORM_OPTIONS).

  Raises:
    UsageError: not a finished OUTPUT_DIR, or an option given that differs from that run's.
  """
  if not config.vocab_from:
    return config
  source = config.vocab_from
  if os.path.abspath(source) == os.path.abspath(config.output_dir):
    raise UsageError("--vocab_from must be another run's OUTPUT_DIR, not --output_dir")
  try:
    metadata = contract.load_metadata(source)
  except contract.DataDirError as error:
    raise UsageError(f"--vocab_from {error}") from None
  theirs = {"task": metadata.task, **{name: metadata.options[name] for name in config_lib.TRANSFORM_OPTIONS
                                      if name in metadata.options}}
  theirs.setdefault("chars", False)  # a run from before --chars wrote none
  for name, value in theirs.items():
    if name in given and getattr(config, name) != value:
      flag = "--" + name
      raise UsageError(f"{flag} {getattr(config, name)}: --vocab_from {source} was made with {flag} {value}, "
                       "and its transform is used as it is; leave the flag out")
  return dataclasses.replace(config, **theirs)


def pipeline_options(pipeline_args: Sequence[str]) -> PipelineOptions:
  options = PipelineOptions(list(pipeline_args))
  standard = options.view_as(StandardOptions)
  if standard.runner in (None, "DirectRunner"):
    # DirectRunner may first try Prism, a runner binary it downloads; run in Python instead.
    standard.runner = "FnApiRunner"
  try:
    runners.complete(options)  # what --runner PrismRunner or --environment_type PROCESS needs here
  except runners.Unavailable as error:
    raise UsageError(str(error)) from None
  return options


def _read_splits(pipeline: beam.Pipeline, config: PipelineConfig, input_files: InputFiles, report: bool):
  """{split: its RecordBatches} and the ReadCorpus outputs (with their counts and dead letters).

  --input is split into train and eval by the records' hash, or is all train when there
  are --eval_input files; those and the --test_input files make their splits whole.
  """
  stage = "ReadCorpus" if report else "ReadCorpusToAnalyze"
  reads, splits = [], {}
  for split in input_files.splits():
    if not getattr(input_files, split):  # eval without --eval_input: a share of train's files
      continue
    label = stage if split == "train" else f"{stage}[{split}]"
    reads.append(pipeline | label >> read.ReadCorpus(
        getattr(input_files, split), config.file_format, config.task, config.max_record_bytes, report=report, encoding=config.encoding,
        label_column=config.label_column, fields=config.fields()))
    if split == "train":
      eval_fraction = 0.0 if input_files.eval else config.eval_fraction
      splits.update(reads[-1].records | ("Split" if report else "SplitToAnalyze") >> Split(eval_fraction))
    else:
      splits[split] = reads[-1].records | f"{label}KeyDropped" >> beam.Map(split_lib.without_split_key)
  return splits, reads


def build_pipeline(pipeline: beam.Pipeline, config: PipelineConfig, input_files: InputFiles) -> None:
  """ReadCorpus | Split | Analyze, then ReadCorpus | Split | Transform | Encode... | WriteShards.

  The files are read twice, which costs far less than keeping what was read: once to learn
  the vocabularies (the train split) and size the shards, then again to transform,
  encode and write every split, counting every record this time. So no stage waits
  for the whole corpus to be held, on any runner. Local worker processes send paths of
  runs, not records, back to the runner; other runners shuffle the records to their
  shards (`--shard_writer`, see pipeline/write.py).
  """
  temp_dir = os.path.join(config.output_dir, write.TEMP_DIR)
  config = dataclasses.replace(config, vocab_partitions=vocabulary.partition_count(
      config.vocab_partitions, sum(f.size for f in input_files.train)))
  shard_writer = write.shard_writer_for(config.shard_writer, pipeline.runner)
  logging.info("Records go to their shards through %s (--shard_writer %s on %s)",
               "temporary run files" if shard_writer == write.RUNS else "the runner's shuffle",
               config.shard_writer, type(pipeline.runner).__name__)
  # TFT's adaptive batching starts at a handful of rows: fix it at our batch size, so
  # each graph run (and each encode call after it) works on thousands of records.
  with tft_beam.Context(temp_dir=os.path.join(temp_dir, "tft"), desired_batch_size=arrow.BATCH_SIZE):
    analyzed, _ = _read_splits(pipeline, config, input_files, report=False)
    if config.vocab_from:  # the earlier run's transform, copied into OUTPUT_DIR as it is: no analysis
      transform_fn = pipeline | "ReadTransformFn" >> tft_beam.ReadTransformFn(config.output_dir)
    else:
      transform_fn = analyzed["train"] | "Analyze" >> transform.Analyze(config)
    splits, reads = _read_splits(pipeline, config, input_files, report=True)
    dead_letters = [r[counts.DEAD_LETTER] for r in reads]
    if len(dead_letters) > 1:
      dead_letters = [tuple(dead_letters) | "FlattenDeadLetters" >> beam.Flatten()]
    all_counts = [r[counts.COUNTS] for r in reads] + [
        dead_letters[0] | "WriteDeadLetters" >> write.WriteDeadLetters(config.output_dir)]
    for split in input_files.splits():
      transformed = splits[split] | f"Transform[{split}]" >> transform.Transform(config, transform_fn)
      encoded = transformed | f"Encode[{split}]" >> EncodeSequenceExamples(config.task, split, config.with_chars)
      num_shards = analyzed[split] | f"ShardCount[{split}]" >> write.ShardCount(
          config.num_shards if split == "train" else 0)  # eval, test: sized automatically
      written = encoded.serialized | f"WriteShards[{split}]" >> write.WriteShards(
          config.output_dir, split, num_shards, config.compression, shard_writer)
      all_counts += [encoded[counts.COUNTS], written]
    _ = (tuple(all_counts) | "FlattenCounts" >> beam.Flatten()
         | "GatherCounts" >> statistics.GatherCounts(os.path.join(temp_dir, output_dir_lib.COUNTS_FILE)))


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


def job_error_line(error: Exception) -> str:
  """One line for a job that failed: the innermost error Beam's message carries."""
  text = str(error)
  found = re.findall(r"((?:\w+\.)*\w*(?:Error|Exception): [^\n]+)", text)
  found = [line for line in found if not line.startswith("RuntimeError: ")] or found
  line = found[-1] if found else (text.strip().splitlines() or [type(error).__name__])[-1]
  return re.sub(r" \[while running '[^']*'\]$", "", line.split("\n")[0]).strip()


def run(argv: Optional[Sequence[str]] = None) -> int:
  gc.freeze()  # the imported modules: never garbage, so no collection needs to go through them
  parser = build_parser()
  known, pipeline_args = parser.parse_known_args(argv)
  if not known.verbose:  # a failed job is our one error line, not Beam's logged tracebacks
    logging.getLogger("apache_beam").setLevel(logging.CRITICAL)
  config = runners.absolute_paths(config_lib.from_flags(known))
  try:
    check_pipeline_args(pipeline_args, parser)
    options = pipeline_options(pipeline_args)
    config = with_vocab_from(config, explicit_flags(argv))
    check_config(config)
    input_files = match_input_files(config)
    output_dir_lib.prepare(config.output_dir, known.overwrite)
    if config.vocab_from:
      output_dir_lib.copy_transform(config.vocab_from, config.output_dir)
  except UsageError as error:
    if known.verbose:
      logging.exception("usage error")
    parser.error(str(error))  # exits 2 with the usage line and one clear line

  input_bytes = sum(f.size for f in input_files.all())
  logging.info("Reading %d files (%d bytes) into %s", len(input_files.all()), input_bytes, config.output_dir)
  workers = runners.local_workers(options, pipeline_args, input_bytes)
  if workers > 1:
    logging.info("%d worker processes (--direct_num_workers 1 runs in this process)", workers)
  pipeline = beam.Pipeline(options=options)
  build_pipeline(pipeline, config, input_files)
  # Hundreds of thousands of long-lived objects (TF, Beam, TFT) make each full garbage
  # collection slow, and per-record work triggers many. Freeze what exists now and
  # collect less often. The modules were frozen first (`run`'s first line): this
  # collection only goes through what building the pipeline made.
  gc.collect()
  gc.freeze()
  gc.set_threshold(50_000, 20, 100)
  try:
    result = runners.run(pipeline)  # and stops every process the job started
  except Exception as error:  # pylint: disable=broad-except  # no COMPLETED: a rerun starts over
    if known.verbose:
      raise
    print(f"error: the job failed: {job_error_line(error)} (--verbose shows the traceback)", file=sys.stderr)
    return 1
  log_counters(result)
  try:  # errors past this point are about the data, not the command line: no usage line
    metadata = output_dir_lib.finalize(config, input_files)
  except UsageError as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  c = metadata["counts"]
  written = [f"{metadata['splits'][split]['examples']} {split}" for split in input_files.splits()]
  print(f"Wrote {', '.join(written[:-1])} and {written[-1]} examples "
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
