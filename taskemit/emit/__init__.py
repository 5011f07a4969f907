"""Where an event enters: the ``listener`` decorator, the ``Registry`` and the ``Emitter``."""

from __future__ import annotations

from .emitter import Emitter
from .listener import Listener, as_listener, listener
from .receipt import EmitReceipt
from .registry import Registry, discover_listeners

__all__ = ("EmitReceipt", "Emitter", "Listener", "Registry", "as_listener", "discover_listeners", "listener")
