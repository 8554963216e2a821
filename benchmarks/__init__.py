"""Benchmarks: the pipeline and the trainer's input against honest baselines.

`python -m benchmarks.run_all` (or `make bench`) runs everything and writes one JSON of
results; each module also runs on its own (`python -m benchmarks.<module> --help`).
Generated corpora and outputs go under a temporary directory, never into the repo.
"""
