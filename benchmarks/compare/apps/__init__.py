"""Worker apps: no-op tasks for each system, configured from BENCH_* environment variables."""
