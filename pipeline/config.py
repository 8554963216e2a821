"""The pipeline's options: one frozen dataclass, the only place a default is written.

Each field is also a command-line flag (`--name`, or the `flag` in its metadata), built
by `add_flags` from the field's type, default and metadata; `from_flags` builds the
config back from the parsed flags. Adding an option is adding a field here.
"""

import argparse
import dataclasses
import typing
from typing import Optional, Tuple

import contract
from corpus import records


class UsageError(Exception):
  """A mistake in the command line or its inputs: exit 2 with one line."""


def _option(default=dataclasses.MISSING, help: str = "", **argparse_kwargs):  # pylint: disable=redefined-builtin
  """A field that is also a flag: no default makes the flag required; `argparse_kwargs`
  (flag, choices, action, metavar) go to add_argument."""
  return dataclasses.field(default=default, metadata={"help": help, **argparse_kwargs})


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  inputs: Tuple[str, ...] = _option(
      flag="--input", action="append", metavar="GLOB",
      help="input files, globs or directories (local or gs://); repeat for several; .gz is read transparently")
  output_dir: str = _option(help="where shards, vocabularies and metadata go")
  file_format: str = _option(flag="--format", choices=contract.FORMATS)
  task: str = _option(choices=contract.TASKS)
  eval_inputs: Tuple[str, ...] = _option(
      (), flag="--eval_input", action="append", metavar="GLOB",
      help="files, globs or directories of the eval split (a dataset's official dev files), repeatable; "
      "when given, --eval_fraction is not used and all of --input is train")
  test_inputs: Tuple[str, ...] = _option(
      (), flag="--test_input", action="append", metavar="GLOB",
      help="files, globs or directories of a test split, repeatable: written and counted like the others, "
      "never read by trainer.task (score it with trainer.evaluate --split test)")
  eval_fraction: float = _option(0.1, help="share of --input's records (by a stable hash of their content) in "
                                 "eval, when there is no --eval_input")
  num_shards: int = _option(0, help="train shards; 0 = automatic, about 128 MB each. "
                            "Eval shards are always sized automatically")
  max_vocab: Optional[int] = _option(None, help="vocabulary size cap, counting <pad> and <unk> (default: no cap)")
  min_count: int = _option(1, help="drop tokens seen fewer times in train (they map to <unk>)")
  max_length: int = _option(512, help="truncate longer sequences (counted)")
  lowercase: Optional[bool] = _option(
      None, help="lowercase the tokens (their `chars` keep their case); default: on for --task tag, where the "
      "characters carry the case, off for lm and classify")
  compression: str = _option("none", choices=("none", "gzip"))
  max_error_fraction: float = _option(
      0.1, help="fail (exit 2, no COMPLETED) if more than this share of records are dead letters")
  max_record_bytes: int = _option(records.DEFAULT_MAX_RECORD_BYTES, help="records longer than this are dead letters")
  encoding: str = _option("utf-8", help="the input files' encoding, any Python codec (latin-1, utf-16, ...); "
                          "a UTF-8 byte-order mark is skipped")
  vocab_partitions: int = _option(0, help="hash partitions the vocabulary is counted in; "
                                  "0 = automatic, one per 256 MB of input")
  label_column: Optional[str] = _option(
      None, help="conllu: the label's column, upos (default), xpos, deprel, feats, misc or a column number; "
      "conll: a column number (default: the last column)")
  text_field: str = _option("text", help="jsonl, parquet: the name of the raw text's field")
  tokens_field: str = _option("tokens", help="jsonl, parquet: the name of the given tokens' field")
  labels_field: str = _option("labels", help="jsonl, parquet: the name of the per-token labels' field (tag)")
  label_field: str = _option("label", help="jsonl, parquet: the name of the label's field (classify)")
  tokenizer: str = _option("word", choices=("word", "whitespace", "wordpiece"),
                           help="word: one token per word and punctuation mark; whitespace: the text's "
                           "whitespace-separated strings as they are (pre-tokenized corpora); wordpiece: subword "
                           "pieces learned on train")
  vocab_from: Optional[str] = _option(
      None, metavar="OUTPUT_DIR", help="encode with an earlier run's transform_fn (its vocabularies and "
      "tokenizer), no analysis: a token gets the same id in both outputs, so a model trained on one continues "
      "on the other. The options that shape the transform (TRANSFORM_OPTIONS) are that run's")
  chars: Optional[bool] = _option(
      None, help="write the `chars` feature list (each token's character ids) and chars.txt; "
      "default: on for --task tag, off for lm and classify")
  max_token_chars: int = _option(16, help="characters kept per token for --chars: a longer token keeps its "
                                 "first and last max_token_chars/2 (counted in truncated_chars)")
  max_chars: Optional[int] = _option(None, help="character vocabulary size cap for --chars, counting <pad> and "
                                     "<unk> (default: every character seen in train)")
  shard_writer: str = _option(
      "auto", choices=("auto", "runs", "shuffle"),
      help="how records reach their shards: runs (temporary files; only their paths are grouped), "
      "shuffle (through the runner's shuffle, no temporary file), or auto: runs on Beam's local runners, "
      "shuffle on the others (Dataflow, Flink, Spark, portable). The shards are the same bytes either way")

  def fields(self) -> records.Fields:
    """The names of a JSON object's or a Parquet row's fields."""
    return records.Fields(self.text_field, self.tokens_field, self.labels_field, self.label_field)

  def options(self) -> dict:
    """The options that shape the output, as recorded in metadata.json.

    Not where the job reads and writes, nor how it gets there (`shard_writer`): the same
    input and options give the same bytes, metadata.json included, whatever the runner.
    """
    options = dataclasses.asdict(self)
    for not_an_output_option in ("inputs", "eval_inputs", "test_inputs", "output_dir", "shard_writer",
                                 "vocab_from"):
      options.pop(not_an_output_option)
    options["format"] = options.pop("file_format")
    options["chars"] = self.with_chars
    options["lowercase"] = self.lowercased
    return options

  @property
  def lowercased(self) -> bool:
    """Whether the tokens are lowercased: --lowercase, or by default for tag."""
    return self.task == "tag" if self.lowercase is None else self.lowercase

  @property
  def with_chars(self) -> bool:
    """Whether the records get the `chars` feature list: --chars, or by default for tag."""
    return self.task == "tag" if self.chars is None else self.chars


# The options a transform_fn is made with: --vocab_from takes them from the earlier run.
TRANSFORM_OPTIONS = ("task", "tokenizer", "lowercase", "max_length", "max_vocab", "min_count", "vocab_partitions",
                     "chars", "max_token_chars", "max_chars")


def _flag_type(annotation):
  """int for int and Optional[int], ...: what argparse converts a flag's value with."""
  args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
  return args[0] if typing.get_origin(annotation) is typing.Union else annotation


def add_flags(parser: argparse.ArgumentParser) -> None:
  """Adds a flag for every PipelineConfig field, with the field's default."""
  hints = typing.get_type_hints(PipelineConfig)
  for field in dataclasses.fields(PipelineConfig):
    kwargs = dict(field.metadata)
    flag = kwargs.pop("flag", f"--{field.name}")
    kwargs["dest"] = field.name
    if field.default is dataclasses.MISSING:
      kwargs["required"] = True
    elif kwargs.get("action") == "append":  # argparse appends to the default: start from none
      kwargs["default"] = None
    else:
      kwargs["default"] = field.default
      if kwargs["help"]:
        kwargs["help"] += " (default: %(default)s)" if "default" not in kwargs["help"] else ""
    if _flag_type(hints[field.name]) is bool:
      kwargs["action"] = argparse.BooleanOptionalAction
    elif "action" not in kwargs:
      kwargs["type"] = _flag_type(hints[field.name])
    parser.add_argument(flag, **kwargs)


def from_flags(flags: argparse.Namespace) -> PipelineConfig:
  """The config of parsed flags (other flags in `flags` are ignored)."""
  values = {field.name: getattr(flags, field.name) for field in dataclasses.fields(PipelineConfig)}
  for name in ("inputs", "eval_inputs", "test_inputs"):
    values[name] = tuple(values[name] or ())
  return PipelineConfig(**values)
