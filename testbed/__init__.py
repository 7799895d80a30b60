"""Fakes and process helpers that the tests and the benchmarks both start.

Neither tests/ nor bench/ imports the other; what they share lives here so a benchmark
runs without the test suite and a test runs without the benchmarks.
"""
