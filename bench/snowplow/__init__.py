"""Benchmarks of the Snowplow collector (run by `make bench`; not tests)."""
