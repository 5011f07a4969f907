"""The example from Litestar's events docs, run end to end by ``taskemit demo``."""
