"""Benchmarks against honest baselines: `python -m benchmarks.run_all --help`, and BENCHMARKS.md."""
