"""taskemit: durable, retrying, scheduled events for Litestar and plain asyncio, on arq and Redis."""

from __future__ import annotations

from .attempt import Attempt, Retry
from .cron import CronConfigError, CronSchedule, cron
from .emitter import EmitReceipt, Emitter
from .errors import (
    EmitBufferFull,
    ListenerArgumentError,
    ListenerConfigError,
    ListenerError,
    NotReplayable,
    PayloadEncodeError,
    TaskEmitError,
    UnknownEventError,
)
from .jobrun import AttemptsExhausted, ListenerTimeout
from .listener import Listener, listener
from .policy import Backoff, RetryPolicy
from .settings import Settings, load_settings
from .worker import worker_settings

__all__ = (
    "Attempt",
    "AttemptsExhausted",
    "Backoff",
    "CronConfigError",
    "CronSchedule",
    "EmitBufferFull",
    "EmitReceipt",
    "Emitter",
    "Listener",
    "ListenerArgumentError",
    "ListenerConfigError",
    "ListenerError",
    "ListenerTimeout",
    "NotReplayable",
    "PayloadEncodeError",
    "Retry",
    "RetryPolicy",
    "Settings",
    "TaskEmitError",
    "UnknownEventError",
    "cron",
    "listener",
    "load_settings",
    "worker_settings",
)

__version__ = "0.1.0"
