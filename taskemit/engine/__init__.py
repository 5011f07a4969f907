"""The worker side: taskemit's worker loop, how one job runs, the process pool, heartbeats."""

from __future__ import annotations

from .loop import Engine
from .worker import InProcessWorker, engine_for, worker_settings

__all__ = ("Engine", "InProcessWorker", "engine_for", "worker_settings")
