"""taskemit in Litestar.

- ``TaskEmitPlugin(TaskEmitConfig(...))``: the emitter backend, the ``Emitter`` as a dependency,
  ``litestar taskemit ...``, an in-app worker for development, and the dashboard with its JSON API.
- ``ArqEventEmitter``: the backend alone, ``Litestar(..., event_emitter_backend=ArqEventEmitter)``.
- ``metrics_route()``: Prometheus metrics as a route.
"""

from __future__ import annotations

from .backend import ArqEventEmitter, LitestarUnknownEventError, metrics_route
from .config import TaskEmitConfig
from .plugin import TaskEmitPlugin

__all__ = ("ArqEventEmitter", "LitestarUnknownEventError", "TaskEmitConfig", "TaskEmitPlugin", "metrics_route")
