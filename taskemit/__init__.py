"""taskemit: durable, retrying, scheduled events for Litestar and plain asyncio, on arq and Redis."""

from __future__ import annotations

from .emitter import EmitReceipt, Emitter
from .errors import (
    EmitBufferFull,
    ListenerArgumentError,
    ListenerConfigError,
    ListenerError,
    PayloadEncodeError,
    TaskEmitError,
    UnknownEventError,
)
from .listener import Listener, listener
from .settings import Settings, load_settings
from .worker import ListenerTimeout, worker_settings

__all__ = (
    "EmitBufferFull",
    "EmitReceipt",
    "Emitter",
    "Listener",
    "ListenerArgumentError",
    "ListenerConfigError",
    "ListenerError",
    "ListenerTimeout",
    "PayloadEncodeError",
    "Settings",
    "TaskEmitError",
    "UnknownEventError",
    "listener",
    "load_settings",
    "worker_settings",
)

__version__ = "0.1.0"
