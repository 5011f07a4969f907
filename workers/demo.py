"""Worker entry module for the demo app (Litestar's events example).

    taskemit worker workers.demo:WorkerSettings --processes 2
    arq workers.demo.WorkerSettings
"""

from taskemit.demo.listeners import WorkerSettings

__all__ = ["WorkerSettings"]
