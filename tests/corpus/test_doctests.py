"""The worked examples in the docstrings of corpus/ and contract.py run as they read."""

import doctest
import importlib

import pytest

MODULES = ["corpus.files", "corpus.lines", "corpus.blocks", "corpus.records", "corpus.reader", "corpus.parquet",
           "contract"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
  module = importlib.import_module(name)
  failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
  assert tried and not failures
