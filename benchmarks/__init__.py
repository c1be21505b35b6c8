"""Benchmarks (not tests): ``python -m benchmarks`` prints figures and writes JSON."""
