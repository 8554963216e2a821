"""OUTPUT_DIR before and after the job: cleared of an earlier run's files (--overwrite), the
--vocab_from transform copied in, then filled from the job's counts: metadata.json, the
vocabularies, and COMPLETED last, unless the error budget is blown.
"""

import json
import os
import re
import time

import tensorflow as tf

import contract
from pipeline import chars as chars_lib
from pipeline import counts
from pipeline import statistics
from pipeline import transform
from pipeline import vocabulary
from pipeline import write
from pipeline.config import PipelineConfig, UsageError
from pipeline.inputs import InputFiles

# Dead letters that suggest the files are in another encoding (UTF-16 read as UTF-8 is
# full of NUL bytes).
_WRONG_ENCODING_REASONS = ("undecodable", "nul_byte")
COUNTS_FILE = "counts.json"  # under OUTPUT_DIR/.tmp while the job runs

# What an OUTPUT_DIR may hold; --overwrite removes these and refuses anything else.
_OWN_ENTRIES = re.compile(
    r"^((train|eval|test)-\d{5}-of-\d{5}\.tfrecord(\.gz)?|vocab\.txt|labels\.txt|chars\.txt|vocab_counts\.txt|"
    r"metadata\.json|"
    r"COMPLETED|transform_fn|transformed_metadata|errors|lengths\.png|\.tmp)$")


def copy_transform(source: str, output_dir: str) -> None:
  """--vocab_from's transform_fn/ and transformed_metadata/ into OUTPUT_DIR, as they are."""
  for name in (contract.TRANSFORM_FN_DIR, contract.TRANSFORMED_METADATA_DIR):
    for directory, _, file_names in tf.io.gfile.walk(os.path.join(source, name)):
      target = os.path.join(output_dir, os.path.relpath(directory, source))
      tf.io.gfile.makedirs(target)
      for file_name in file_names:
        tf.io.gfile.copy(os.path.join(directory, file_name), os.path.join(target, file_name), overwrite=True)


def prepare(output_dir: str, overwrite: bool) -> None:
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


def _write_vocab(config: PipelineConfig, asset_name: str, file_name: str, reserved=contract.RESERVED_TOKENS) -> dict:
  """transform_fn/assets/NAME (real entries) → OUTPUT_DIR/FILE with the reserved entries
  first (<pad>, <unk>; for an lm's tokens also </s>)."""
  asset = os.path.join(config.output_dir, contract.TRANSFORM_FN_DIR, "assets", asset_name)
  entries = contract.read_vocab(asset) if tf.io.gfile.exists(asset) else []
  with tf.io.gfile.GFile(os.path.join(config.output_dir, file_name), "w") as f:
    f.write("".join(entry + "\n" for entry in list(reserved) + entries))
  vocab = {"file": file_name, "size": len(entries) + len(reserved), "pad_id": contract.PAD_ID,
           "unk_id": contract.UNK_ID}
  if contract.EOS_TOKEN in reserved:
    vocab["eos_id"] = contract.EOS_ID
  return vocab


def _write_counts(config: PipelineConfig, totals: dict, summary: dict) -> bool:
  """OUTPUT_DIR's VOCAB_COUNTS_FILE (train count per token id, for --word_dropout): the
  analysis's counts, or --vocab_from's file as it is (its ids are ours). False where there
  are none (WordPiece pieces)."""
  if config.vocab_from:
    source = os.path.join(config.vocab_from, contract.VOCAB_COUNTS_FILE)
    if not tf.io.gfile.exists(source):
      return False
    tf.io.gfile.copy(source, os.path.join(config.output_dir, contract.VOCAB_COUNTS_FILE), overwrite=True)
    return True
  reserved = [0, totals.get(counts.key(counts.UNKNOWN, "train"), 0)]  # <pad>, then the train tokens that are <unk>
  if config.task == "lm":
    reserved.append(summary["splits"]["train"]["examples"])  # </s>: one per record
  return vocabulary.write_counts(transform.vocab_counts_path(config.output_dir), config.output_dir, reserved)


def _encoding_hint(record_counts: dict, encoding: str) -> str:
  """"; N do not decode as E: is --encoding right?" when dead letters did not decode, else ""."""
  undecodable = sum(record_counts["dead_letter"].get(reason, 0) for reason in _WRONG_ENCODING_REASONS)
  return f"; {undecodable} do not decode as {encoding}: is --encoding right?" if undecodable else ""


def finalize(config: PipelineConfig, input_files: InputFiles) -> dict:
  """Counts → metadata.json, vocabularies; COMPLETED last unless the error budget is blown."""
  temp_dir = os.path.join(config.output_dir, write.TEMP_DIR)
  with tf.io.gfile.GFile(os.path.join(temp_dir, COUNTS_FILE)) as f:
    totals = json.load(f)
  summary = statistics.summarize(totals, input_files.splits())
  if config.with_chars:
    summary["counts"]["truncated_chars"] = totals.get(counts.TRUNCATED_CHARS, 0)
  statistics.check_identity(summary)
  if not summary["splits"]["train"]["examples"]:
    record_counts = summary["counts"]
    problems = ", ".join(f"{sum(record_counts[kind].values())} {kind.replace('_', ' ')}"
                         for kind in ("filtered", "dead_letter")) + ("" if input_files.eval else ", or eval")
    raise UsageError(f"no training examples among the {record_counts['read']} records read ({problems})"
                     f"{_encoding_hint(record_counts, config.encoding)}; check --input, --format"
                     f"{'' if input_files.eval else ' and --eval_fraction'}")
  histogram = {int(l): n for l, n in summary["length_histogram"]["train"].items()}
  metadata = {
      "format_version": contract.FORMAT_VERSION,
      "task": config.task,
      "features": contract.feature_spec(config.task, config.with_chars),
      "vocab": _write_vocab(config, transform.TOKEN_VOCAB_NAME, contract.VOCAB_FILE,
                            contract.reserved_tokens(config.task)),
  }
  if config.task in ("tag", "classify"):
    metadata["labels"] = _write_vocab(config, transform.LABEL_VOCAB_NAME, contract.LABELS_FILE)
  if config.with_chars:
    metadata["chars"] = chars_lib.metadata(_write_vocab(config, chars_lib.CHAR_VOCAB_NAME, contract.CHARS_FILE)["size"],
                                           config.max_token_chars)
  if _write_counts(config, totals, summary):
    metadata["vocab"]["counts_file"] = contract.VOCAB_COUNTS_FILE
  for split in summary["splits"].values():  # sizes let readers detect truncated or altered shards
    for shard in split["shards"]:
      shard["bytes"] = tf.io.gfile.stat(os.path.join(config.output_dir, shard["file"])).length
  metadata.update(summary)
  metadata["tokenizer"] = transform.tokenizer_metadata(config)
  metadata["bucket_boundaries"] = statistics.bucket_table(histogram)
  metadata["options"] = config.options()
  if config.vocab_from:
    source = contract.read_metadata(config.vocab_from)
    metadata["tokenizer"] = source["tokenizer"]
    metadata["vocab_from"] = {"output_dir": config.vocab_from, "created": source.get("created")}
  metadata["versions"] = statistics.versions()
  metadata["inputs"] = [{"file": f.path, "size": f.size, **({"split": split} if split != "train" else {})}
                        for split in input_files.splits() for f in getattr(input_files, split)]
  metadata["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
  with tf.io.gfile.GFile(os.path.join(config.output_dir, contract.METADATA_FILE), "w") as f:
    json.dump(metadata, f, indent=1, ensure_ascii=False)
  tf.io.gfile.rmtree(temp_dir)

  record_counts = metadata["counts"]
  dead = sum(record_counts["dead_letter"].values())
  if record_counts["read"] and dead / record_counts["read"] > config.max_error_fraction:
    raise UsageError(
        f"{dead} of {record_counts['read']} records are dead letters, over --max_error_fraction "
        f"{config.max_error_fraction}{_encoding_hint(record_counts, config.encoding)}; "
        f"see {os.path.join(config.output_dir, contract.ERRORS_DIR)}")
  with tf.io.gfile.GFile(os.path.join(config.output_dir, contract.COMPLETED_FILE), "w") as f:
    f.write(metadata["created"] + "\n")
  return metadata
