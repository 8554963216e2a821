r"""Baseline (b): the straightforward TFT pipeline, as the TFT tutorials write it.

    ReadFromText | instance dicts {'text': line} | AnalyzeAndTransformDataset (train)
                 | TransformDataset (eval) | Map(one SequenceExample per instance) | WriteToTFRecord

The job of benchmarks.handwritten (its split and record builder; tokens by TF regex ops), on
Beam's in-process FnApiRunner; other Beam options (e.g. --direct_num_workers) pass through.

Example:
  python -m benchmarks.tft_baseline --input /tmp/rnn_bench/corpora/prose_10mb.txt \
      --output_dir /tmp/rnn_bench/out/tft_baseline
"""

import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import apache_beam as beam  # pylint: disable=g-import-not-at-top
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.options.pipeline_options import PipelineOptions
from tensorflow_transform.tf_metadata import dataset_metadata
from tensorflow_transform.tf_metadata import schema_utils

from benchmarks import handwritten

RAW_METADATA = dataset_metadata.DatasetMetadata(
    schema_utils.schema_from_feature_spec({"text": tf.io.FixedLenFeature([], tf.string)}))


def make_preprocessing_fn(max_length: int):
  def preprocessing_fn(inputs):
    text = tf.strings.regex_replace(inputs["text"], r"[\p{Z}\p{Cc}]+", " ")
    text = tf.strings.regex_replace(text, r"([\pP\pS])", r" \1 ")
    tokens = tf.strings.split(text)[:, :max_length]
    vocabulary = tft.vocabulary(tokens, vocab_filename="tokens")
    index = tft.apply_vocabulary(tokens, vocabulary, default_value=-1)
    ids = tf.ragged.map_flat_values(
        lambda v: tf.where(v < 0, tf.constant(1, tf.int64), v + handwritten.NUM_RESERVED), index)
    return {"tokens": ids.to_sparse(), "length": tokens.row_lengths()}
  return preprocessing_fn


def to_sequence_example(instance) -> bytes:
  tokens_counter.inc(len(instance["tokens"]))
  return handwritten.build_example([int(token_id) for token_id in instance["tokens"]])


tokens_counter = beam.metrics.Metrics.counter("tft_baseline", "tokens")


def run(inputs, output_dir, pipeline_args, num_shards=4, eval_fraction=0.1, max_length=512) -> dict:
  threshold = int(eval_fraction * (1 << 64))
  options = PipelineOptions(["--runner", "FnApiRunner"] + list(pipeline_args))
  temp_dir = tempfile.mkdtemp(prefix="tft_baseline_")
  pipeline = beam.Pipeline(options=options)
  with tft_beam.Context(temp_dir=temp_dir):
    lines = (
        [pipeline | f"Read{i}" >> beam.io.ReadFromText(path) for i, path in enumerate(inputs)]
        | "Flatten" >> beam.Flatten()
        | "NotEmpty" >> beam.Filter(lambda line: line.strip()))
    is_eval = lambda line: handwritten.is_eval(line, threshold)
    to_dict = lambda line: {"text": line.encode("utf-8")}
    train = lines | "Train" >> beam.Filter(lambda line: not is_eval(line)) | "TrainDicts" >> beam.Map(to_dict)
    evaluation = lines | "Eval" >> beam.Filter(is_eval) | "EvalDicts" >> beam.Map(to_dict)
    (transformed_train, _), transform_fn = (
        (train, RAW_METADATA) | tft_beam.AnalyzeAndTransformDataset(make_preprocessing_fn(max_length)))
    transformed_eval, _ = (((evaluation, RAW_METADATA), transform_fn) | tft_beam.TransformDataset())
    _ = transform_fn | tft_beam.WriteTransformFn(output_dir)
    for split, data, shards in (("train", transformed_train, num_shards), ("eval", transformed_eval, 1)):
      _ = (data
           | f"Encode[{split}]" >> beam.Map(to_sequence_example)
           | f"Write[{split}]" >> beam.io.WriteToTFRecord(
               os.path.join(output_dir, split), file_name_suffix=".tfrecord", num_shards=shards))
    result = pipeline.run()
    result.wait_until_finish()
  tokens = result.metrics().query(beam.metrics.MetricsFilter().with_name("tokens"))["counters"]
  return {"tokens": sum(counter.committed or 0 for counter in tokens)}


def main(argv=None):
  known, pipeline_args = handwritten.parser(__doc__).parse_known_args(argv)
  result = run(known.input, known.output_dir, pipeline_args, known.num_shards, known.eval_fraction,
               known.max_length)
  print(json.dumps(result))


if __name__ == "__main__":
  sys.exit(main())
