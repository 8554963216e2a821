"""TestPipeline on Beam's in-process Python runner (the DirectRunner may try to download Prism)."""

from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline


def test_pipeline():
  return TestPipeline(runner="FnApiRunner", options=PipelineOptions([]))


test_pipeline.__test__ = False  # not a test itself
