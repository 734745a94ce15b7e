"""Benchmarks against the live stack: medians and ratios against a baseline measured in the same run.

``python -m bench.run [--quick]`` is the suite (upload latency, processor throughput against a naive processor
and the database ceiling, producer rate and memory, processor memory); ``python -m bench.dashboard_bench`` is
the dashboard's.  Nothing here asserts on time: the numbers are for reading.
"""
