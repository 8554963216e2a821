"""The trainer's hyper-parameters, as one frozen dataclass built from flags in the entry point.

Each field is the only place where its default is written: `trainer.task` makes one flag
per field (help text and choices from the field's metadata) and copies the parsed flags
back with `dataclasses.fields`, so a new hyper-parameter is one new field here.

Also the names in MODEL_DIR, so that the tools that read it (trainer.evaluate,
trainer.predict) need not import the Keras modules that write it.
"""

import dataclasses
from typing import Optional

# Batches are padded to their longest row rounded up to 2, not to the bucket boundary:
# less padding than the boundary (BENCHMARKS.md). More shapes cost nothing here: the
# training steps run inside one tf.function over the iterator, and the eval step is
# traced with reduce_retracing.
DEFAULT_PAD_MULTIPLE = 2

# --tag_scheme's choices (trainer/entities.py reads them).
TAG_SCHEMES = ("auto", "iob1", "iob2", "bioes", "none")

# MODEL_DIR's layout.
CHECKPOINTS_DIR = "checkpoints"  # the last few steps, for resuming
BEST_DIR = "checkpoints/best"  # the best-so-far step's checkpoint
BEST_FILE = "best.json"  # {"best_step", "best": eval metrics, "evals_without_improvement"}, in BEST_DIR
EXPORT_DIR = "export"
LOGS_DIR = "logs"
METRICS_FILE = "metrics.json"
MODEL_FILE = "model.json"  # what the checkpoints in MODEL_DIR are a model of


# What a flag left out means where it depends on the data's task: the taggers of the RNN
# era (a BiLSTM over word and character features, dropout, rare words dropped to <unk>),
# measured on a treebank in BENCHMARKS.md ("Taggers on public datasets"). trainer.task
# applies them (`with_task_defaults`) before anything reads the config; a flag given wins.
TASK_DEFAULTS = {
    "tag": {"bidirectional": True, "dropout": 0.5, "word_dropout": 0.25, "char_features": 128, "decay": "cosine"},
}


def _flag(default, help_text: str, choices=None, data: bool = False):
  """A field with its flag's help; `data`: a flag of the input pipeline, shared with trainer.batches."""
  return dataclasses.field(default=default, metadata={"help": help_text, "choices": choices, "data": data})


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
  data_dir: str = dataclasses.field(metadata={"help": "OUTPUT_DIR of pipeline.preprocess", "data": True})
  model_dir: str = dataclasses.field(metadata={"help": "checkpoints/, logs/, export/, metrics.json"})
  cell: str = _flag("lstm", "recurrent cell", choices=("lstm", "gru"))
  bidirectional: bool = _flag(False, "bidirectional RNN layers (tag, classify)")
  num_layers: int = _flag(1, "stacked RNN layers")
  embedding_dim: int = _flag(64, "token embedding size")
  hidden: int = _flag(128, "RNN units per direction")
  dropout: float = _flag(0.0, "dropout on RNN inputs and outputs")
  recurrent_dropout: float = _flag(0.0, "dropout on the recurrent state (> 0 disables cuDNN kernels on GPU)")
  char_embedding_dim: int = _flag(32, "character embedding size of the char encoder, used where the data has "
                                  "`chars` (pipeline --chars, on for tag); 0 = no char encoder")
  char_features: int = _flag(64, "char encoder output per token, concatenated with the word embedding; "
                             "0 = no char encoder")
  char_encoder: str = _flag("cnn", "per token: a CNN over its characters, max-pooled, or a BiLSTM",
                            choices=("cnn", "lstm"))
  word_dropout: float = _flag(0.0, "alpha: in training a token seen c times in train becomes <unk> with "
                              "probability alpha / (alpha + c) (needs the data's vocab_counts.txt); 0 = off")
  tie_embeddings: bool = _flag(False, "lm: the output layer is the input embedding matrix, transposed "
                               "(projected from the last RNN size when it differs)")
  # Small batches and many updates learn fastest on a CPU; on GPUs scale both (README).
  tokens_per_batch: int = _flag(1024, "padded tokens per global batch; sets each bucket's batch size", data=True)
  num_buckets: int = _flag(16, "length buckets, at the pipeline's optimal boundaries", choices=(4, 8, 16, 32),
                           data=True)
  pad_multiple: int = _flag(DEFAULT_PAD_MULTIPLE, "N: pad each batch to its longest sequence rounded up to a "
                            "multiple of N; 0: to its bucket's boundary (one shape per bucket, more padding)",
                            data=True)
  cpu_replicas: int = _flag(1, "without GPUs: split the CPU into N logical devices, one replica each", data=True)
  train_steps: int = _flag(1000, "optimizer steps in all (a rerun resumes up to this step)")
  eval_every: int = _flag(200, "steps between evaluations on the eval split (and best-checkpoint checks)")
  log_every: int = _flag(50, "steps between log lines and TensorBoard points")
  checkpoint_every: int = _flag(200, "steps between checkpoints")
  learning_rate: float = _flag(3e-3, "peak Adam learning rate, reached after --warmup_steps")
  # No warm-up and no decay by default: on the 2.6 MB LM benchmark a constant rate was
  # ahead of warm-up + linear decay at every eval measured (BENCHMARKS.md). Large batches
  # on GPUs want a warm-up (README).
  warmup_steps: int = _flag(0, "steps of linear warm-up from 0 to --learning_rate")
  decay: str = _flag("none", "after warm-up: decay to 0 at --train_steps, or keep the peak",
                     choices=("linear", "cosine", "none"))
  clip_norm: float = _flag(1.0, "global gradient norm clip; 0 = off")
  loss_reduction: str = _flag("token", "token: mean over real tokens; sequence: mean over sequences of their mean",
                              choices=("token", "sequence"))
  tag_scheme: str = _flag("auto", "tag: the chunk tags of labels.txt, for entity F1 and well-formed decoded "
                          "sequences; auto: from labels.txt (and the train labels for IOB1 vs IOB2)",
                          choices=TAG_SCHEMES)
  crf: bool = _flag(False, "tag: a CRF output layer (learned transition scores, sequence loss), decoded by Viterbi")
  export: str = _flag("best", "export the step with the best eval metric (entity F1 for chunk tags, else "
                      "accuracy; loss for lm) or the last",
                      choices=("best", "last"))
  early_stopping: int = _flag(0, "stop after N evaluations without improvement (0: never)")
  seed: int = _flag(42, "initialisation, shuffling and dropout")
  shuffle_buffer: int = _flag(10_000, "records in the shuffle buffer")

  def with_task_defaults(self, task: str, given) -> "TrainerConfig":
    """This config with TASK_DEFAULTS[task] for the fields not in `given` (the flags on the
    command line)."""
    defaults = {name: value for name, value in TASK_DEFAULTS.get(task, {}).items() if name not in given}
    return dataclasses.replace(self, **defaults)

  @property
  def uses_chars(self) -> bool:
    """Whether a char encoder is wanted (the data must also have `chars`; see `char_vocab_size`)."""
    return self.char_features > 0 and self.char_embedding_dim > 0

  def char_vocab_size(self, metadata) -> Optional[int]:
    """The character vocabulary's size if this model encodes characters of this data
    (`contract.Metadata`), else None."""
    return metadata.char_vocab_size if self.uses_chars and metadata.has_chars else None

  @classmethod
  def flag_fields(cls, data: bool):
    """The fields that are flags of the input pipeline (data=True) or the others."""
    return [field for field in dataclasses.fields(cls) if field.metadata.get("data", False) == data]


def vocab_fingerprints(data_dir: str, metadata) -> dict:
  """SHA-256 of an OUTPUT_DIR's vocab.txt (and labels.txt, chars.txt): which tokens the model's ids mean.

  Args:
    data_dir: the OUTPUT_DIR.
    metadata: its `contract.Metadata`.
  """
  import hashlib  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  fingerprints = {}
  for name, path in (("vocab", metadata.vocab_path(data_dir)), ("labels", metadata.labels_path(data_dir)),
                     ("chars", metadata.chars_path(data_dir))):
    if path:
      with tf.io.gfile.GFile(path, "rb") as f:
        fingerprints[name] = hashlib.sha256(f.read()).hexdigest()
  return fingerprints
