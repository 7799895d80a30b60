"""Benchmarks: `python -m bench.run` (or `make bench`) measures the stack and records results."""
