"""taskemit: durable, retrying, scheduled events for Litestar and plain asyncio, on arq and Redis.

The public API is what ``__all__`` lists; the subpackages follow the path of an event:
``emit`` (listeners, registry, emitter) -> ``store`` (keys, codec, Lua) -> ``engine``
(workers) -> ``monitor`` (statuses, dead letters, stats), with ``schedule`` emitting on a clock.
"""

from __future__ import annotations

from .attempt import Attempt, Retry
from .emit import EmitReceipt, Emitter, Listener, Registry, listener
from .engine import worker_settings
from .errors import (
    AttemptsExhausted,
    DurabilityUnavailable,
    EmitBufferFull,
    InvalidArgument,
    JobPayloadError,
    ListenerArgumentError,
    ListenerConfigError,
    ListenerError,
    ListenerTimeout,
    MissingExtra,
    NotDurable,
    NotReplayable,
    OutboxTableMissing,
    PayloadEncodeError,
    PayloadTooLarge,
    PolicyError,
    RedisUnavailable,
    SettingsFileNotFound,
    StateError,
    TaskEmitError,
    UnknownEventError,
    WaitTimeout,
)
from .policy import Backoff, RetryPolicy
from .schedule import CronConfigError, CronSchedule, cron
from .settings import Settings, load_settings
from .state import JobState

__all__ = (
    "Attempt",
    "AttemptsExhausted",
    "Backoff",
    "CronConfigError",
    "CronSchedule",
    "DurabilityUnavailable",
    "EmitBufferFull",
    "EmitReceipt",
    "Emitter",
    "InvalidArgument",
    "JobPayloadError",
    "JobState",
    "Listener",
    "ListenerArgumentError",
    "ListenerConfigError",
    "ListenerError",
    "ListenerTimeout",
    "MissingExtra",
    "NotDurable",
    "NotReplayable",
    "OutboxTableMissing",
    "PayloadEncodeError",
    "PayloadTooLarge",
    "PolicyError",
    "RedisUnavailable",
    "Registry",
    "Retry",
    "RetryPolicy",
    "Settings",
    "SettingsFileNotFound",
    "StateError",
    "TaskEmitError",
    "UnknownEventError",
    "WaitTimeout",
    "cron",
    "listener",
    "load_settings",
    "worker_settings",
)

__version__ = "0.1.0"
