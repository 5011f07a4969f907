"""``python -m benchmarks outbox``: the transactional outbox against the dual write it replaces."""
