"""Benchmarks of taskemit: single-purpose scripts, and ``python -m benchmarks compare``.

This package imports nothing at import time: the comparison's worker apps are imported by
worker processes of other systems too (taskiq runs in a virtualenv of its own).
"""
