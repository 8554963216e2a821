"""Split: RecordBatches → train and eval, by each record's stable content hash.

Files of their own (`--eval_input`, `--test_input`) make a split without a hash: their
batches only lose the key column (`without_split_key`).
"""

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.arrow import SPLIT_KEY


def split_fraction_threshold(eval_fraction: float) -> int:
  """Records whose 64-bit split key is below this go to eval."""
  return int(eval_fraction * (1 << 64))


def without_split_key(batch: pa.RecordBatch) -> pa.RecordBatch:
  """A batch of records whose split is given (by the files they come from), key dropped."""
  return batch.select([name for name in batch.schema.names if name != SPLIT_KEY])


def _split_batch(batch: pa.RecordBatch, threshold: int):
  is_eval = pc.less(batch.column(SPLIT_KEY), pa.scalar(threshold, pa.uint64()))
  columns = [name for name in batch.schema.names if name != SPLIT_KEY]
  for split, mask in (("eval", is_eval), ("train", pc.invert(is_eval))):
    part = batch.filter(mask).select(columns)
    if part.num_rows:
      yield beam.pvalue.TaggedOutput(split, part)


@beam.ptransform_fn
def Split(record_batches, eval_fraction: float):  # pylint: disable=invalid-name
  """RecordBatches → {'train': ..., 'eval': ...} by the stable content hash.

  The same record always lands in the same split, whatever the run or worker; the split
  key column is dropped.
  """
  tagged = record_batches | "BySplitKey" >> beam.FlatMap(
      _split_batch, split_fraction_threshold(eval_fraction)).with_outputs("train", "eval")
  return {"train": tagged.train, "eval": tagged.eval}
