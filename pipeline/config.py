"""The pipeline's options, as one frozen dataclass built from flags in the entry point."""

import dataclasses
from typing import Optional, Tuple


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  inputs: Tuple[str, ...]
  output_dir: str
  file_format: str
  task: str
  eval_fraction: float = 0.1
  num_shards: int = 0  # 0 = automatic: shards of about TARGET_SHARD_BYTES
  max_vocab: Optional[int] = None  # including <pad> and <unk>
  min_count: int = 1
  max_length: int = 512
  lowercase: bool = False
  compression: str = "none"
  max_error_fraction: float = 0.1
  max_record_bytes: int = 1 << 20
  vocab_partitions: int = 0  # 0 = automatic: one per vocabulary.BYTES_PER_PARTITION of input

  def options(self) -> dict:
    """The options that shape the output, as recorded in metadata.json."""
    options = dataclasses.asdict(self)
    for not_an_output_option in ("inputs", "output_dir"):
      options.pop(not_an_output_option)
    options["format"] = options.pop("file_format")
    return options
