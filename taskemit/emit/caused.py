"""``CausedEmitter``: an emitter that records which event caused what it emits.

A listener that declares a parameter annotated ``Emitter`` gets one from the worker
(``Emitter.caused_by``): the follow-up events it emits carry the uuid of the event the
listener is handling, their records keep it (``cause``), and ``taskemit status`` shows it.
"""

from __future__ import annotations

from typing import Any

from ..store.durability import Level
from .publishing import Publishing
from .receipt import EmitReceipt

__all__ = ("CausedEmitter",)


class CausedEmitter:
    """An :class:`Emitter` that records the event that caused what it emits (``Emitter.caused_by``).

    A listener that declares a parameter annotated ``Emitter`` receives one from the worker:
    its follow-up events link to the event the listener is handling (``taskemit status``
    shows the cause).
    """

    __slots__ = ("cause", "emitter")

    def __init__(self, emitter: Publishing, cause: str | None) -> None:
        self.emitter = emitter
        self.cause = cause

    def emit(
        self,
        event: str | object,
        *args: Any,
        priority: int | None = None,
        ordering_key: Any = None,
        session: Any = None,
        outbox: bool = True,
        **kwargs: Any,
    ) -> None:
        pending = self.emitter._prepare(
            event, args, kwargs, cause=self.cause, priority=priority, ordering_key=ordering_key
        )
        if pending is None:
            return
        if session is None:
            self.emitter._submit(pending)
        else:  # the listener's own database transaction
            self.emitter._in_session(pending, session, outbox)

    async def publish(
        self,
        event: str | object,
        *args: Any,
        wait: bool = False,
        timeout: float | None = None,
        durability: Level | None = None,
        priority: int | None = None,
        ordering_key: Any = None,
        session: Any = None,
        outbox: bool = True,
        **kwargs: Any,
    ) -> EmitReceipt | None:
        if session is not None:  # the listener's own database transaction
            return self.emitter._published_in_session(
                event,
                args,
                kwargs,
                wait,
                durability,
                session,
                outbox,
                cause=self.cause,
                priority=priority,
                ordering_key=ordering_key,
            )
        pending = self.emitter._prepare(
            event, args, kwargs, cause=self.cause, priority=priority, ordering_key=ordering_key
        )
        return await self.emitter._publish(pending, wait, timeout, durability)

    async def publish_once(
        self,
        key: str,
        event: str | object,
        *args: Any,
        priority: int | None = None,
        ordering_key: Any = None,
        **kwargs: Any,
    ) -> EmitReceipt | None:
        pending = self.emitter._prepare(
            event, args, kwargs, once_key=key, cause=self.cause, priority=priority, ordering_key=ordering_key
        )
        if pending is None:
            return None
        return await self.emitter._stored(pending, self.emitter.settings.publish_timeout)

    def __getattr__(self, name: str) -> Any:  # settings, registry, redis...
        return getattr(self.emitter, name)
