r"""Baseline (b): the straightforward TFT pipeline, as the TFT tutorials write it.

    ReadFromText | instance dicts {'text': line} | AnalyzeAndTransformDataset (train)
                 | TransformDataset (eval) | Map(one SequenceExample per instance)
                 | WriteToTFRecord

Same job as the pipeline and the hand-written script: same tokenization (TF regex ops in
the preprocessing_fn), same train/eval split, vocabulary on train with <pad>=0, <unk>=1,
one Feature per token, `SerializeToString(deterministic=True)`. It runs on Beam's
in-process Python runner (`FnApiRunner`), so nothing is downloaded; any other Beam
option (e.g. --direct_num_workers) is passed through.

Example:
  python -m benchmarks.tft_baseline --input /tmp/rnn_bench/corpora/prose_10mb.txt \
      --output_dir /tmp/rnn_bench/out/tft_baseline
"""

import argparse
import hashlib
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

RAW_METADATA = dataset_metadata.DatasetMetadata(
    schema_utils.schema_from_feature_spec({"text": tf.io.FixedLenFeature([], tf.string)}))
NUM_RESERVED = 2  # 0 = <pad>, 1 = <unk>


def make_preprocessing_fn(max_length: int):
  def preprocessing_fn(inputs):
    text = tf.strings.regex_replace(inputs["text"], r"[\p{Z}\p{Cc}]+", " ")
    text = tf.strings.regex_replace(text, r"([\pP\pS])", r" \1 ")
    tokens = tf.strings.split(text)[:, :max_length]
    vocabulary = tft.vocabulary(tokens, vocab_filename="tokens")
    index = tft.apply_vocabulary(tokens, vocabulary, default_value=-1)
    ids = tf.ragged.map_flat_values(
        lambda v: tf.where(v < 0, tf.constant(1, tf.int64), v + NUM_RESERVED), index)
    return {"tokens": ids.to_sparse(), "length": tokens.row_lengths()}
  return preprocessing_fn


def is_eval(line: str, threshold: int) -> bool:
  digest = hashlib.blake2b(line.encode("utf-8") + b"\x1e\x1e\x1e", digest_size=8).digest()
  return int.from_bytes(digest, "little") < threshold


def to_sequence_example(instance) -> bytes:
  example = tf.train.SequenceExample()
  example.context.feature["length"].int64_list.value.append(int(instance["length"]))
  features = example.feature_lists.feature_list["tokens"].feature
  for token_id in instance["tokens"]:
    features.add().int64_list.value.append(int(token_id))
  tokens_counter.inc(len(instance["tokens"]))
  return example.SerializeToString(deterministic=True)


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
    train = lines | "Train" >> beam.Filter(lambda line: not is_eval(line, threshold)) | "TrainDicts" >> beam.Map(
        lambda line: {"text": line.encode("utf-8")})
    evaluation = lines | "Eval" >> beam.Filter(lambda line: is_eval(line, threshold)) | "EvalDicts" >> beam.Map(
        lambda line: {"text": line.encode("utf-8")})
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
  parser = argparse.ArgumentParser(prog="python -m benchmarks.tft_baseline", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--input", action="append", required=True)
  parser.add_argument("--output_dir", required=True)
  parser.add_argument("--num_shards", type=int, default=4)
  parser.add_argument("--eval_fraction", type=float, default=0.1)
  parser.add_argument("--max_length", type=int, default=512)
  known, pipeline_args = parser.parse_known_args(argv)
  result = run(known.input, known.output_dir, pipeline_args, known.num_shards, known.eval_fraction,
               known.max_length)
  print(json.dumps(result))


if __name__ == "__main__":
  sys.exit(main())
