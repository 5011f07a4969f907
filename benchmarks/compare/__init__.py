"""``python -m benchmarks compare``: taskemit against arq, SAQ, streaq and taskiq on one Redis.

Layout: ``probe`` (what every no-op task calls), ``apps/`` (the worker apps each system's
worker process imports), ``systems/`` (one adapter per system: worker command line and
producer), ``scenarios/`` (one module per measurement), ``report`` (tables, JSON, chart),
``cli`` (the round-robin runner). Nothing is imported here: worker processes import
``benchmarks.compare.apps.*`` and ``benchmarks.compare.probe`` only.
"""
