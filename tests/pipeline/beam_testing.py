"""Beam helpers for tests: TestPipeline on Beam's in-process Python runner (the
DirectRunner may try to download Prism), and a DoFn run as a runner runs one bundle."""

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.utils.windowed_value import WindowedValue


def test_pipeline():
  return TestPipeline(runner="FnApiRunner", options=PipelineOptions([]))


test_pipeline.__test__ = False  # not a test itself


def run_bundle(do_fn, elements):
  """A DoFn's outputs for one bundle of `elements` (start_bundle, process for each,
  finish_bundle), in order, outside their windows."""
  do_fn.start_bundle()
  for element in elements:
    yield from do_fn.process(element)
  for output in do_fn.finish_bundle() or ():
    if isinstance(output, beam.pvalue.TaggedOutput) and isinstance(output.value, WindowedValue):
      output = beam.pvalue.TaggedOutput(output.tag, output.value.value)
    yield output.value if isinstance(output, WindowedValue) else output
