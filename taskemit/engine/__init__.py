"""The worker side: which jobs a worker takes, how one job runs, the process pool, heartbeats."""

from __future__ import annotations

from .worker import InProcessWorker, TaskEmitWorker, create_taskemit_worker, worker_settings

__all__ = ("InProcessWorker", "TaskEmitWorker", "create_taskemit_worker", "worker_settings")
