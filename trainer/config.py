"""The trainer's hyper-parameters, as one frozen dataclass built from flags in the entry point."""

import dataclasses


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
  pad_multiple: int = 0  # 0: pad to the bucket boundary; N: to the batch's longest, rounded up to N
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
