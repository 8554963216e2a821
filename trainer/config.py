"""The trainer's hyper-parameters, as one frozen dataclass built from flags in the entry point."""

import dataclasses


# Batches are padded to their longest row rounded up to 2, not to the bucket boundary: on
# the 100 MB prose, 16 buckets waste 4.7% instead of 10.1% (BENCHMARKS.md). More shapes
# cost nothing here: the training steps run inside one tf.function over the iterator,
# and the eval step is traced with reduce_retracing.
DEFAULT_PAD_MULTIPLE = 2


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
  data_dir: str
  model_dir: str
  cell: str = "lstm"
  bidirectional: bool = False
  num_layers: int = 1
  embedding_dim: int = 64
  hidden: int = 128
  dropout: float = 0.0  # on the RNN's inputs and outputs
  recurrent_dropout: float = 0.0  # > 0 rules out the cuDNN kernels on GPU
  tokens_per_batch: int = 4096  # padded tokens in one global batch: sets each bucket's batch size
  num_buckets: int = 16
  pad_multiple: int = DEFAULT_PAD_MULTIPLE  # N: pad to the batch's longest, rounded up to N; 0: to the bucket boundary
  train_steps: int = 1000
  eval_every: int = 200
  log_every: int = 50
  learning_rate: float = 1e-3
  clip_norm: float = 1.0  # global gradient norm; 0 = no clipping
  loss_reduction: str = "token"  # or "sequence"
  checkpoint_every: int = 200
  cpu_replicas: int = 1
  seed: int = 42
  shuffle_buffer: int = 10_000
