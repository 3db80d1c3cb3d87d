"""Benchmarks (`make bench`): figures and ratios against baselines measured in the same run.

Benchmarks are not tests: they assert nothing about speed; they print what they measured.
"""
