"""``CausedEmitter``: an emitter that records which event caused what it emits.

A listener that declares a parameter annotated ``Emitter`` gets one from the worker
(``Emitter.caused_by``): the follow-up events it emits carry the uuid of the event the
listener is handling, their records keep it (``cause``), and ``taskemit status`` shows it.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..settings import Settings
from ..store.durability import Level
from .receipt import EmitReceipt
from .writer import PendingEvent

__all__ = ("CausedEmitter",)


class _Emitting(Protocol):
    """What a CausedEmitter uses of the :class:`Emitter` it wraps (which imports this module)."""

    settings: Settings

    def _prepare(
        self,
        event: str | object,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        once_key: str | None = None,
        cause: str | None = None,
        priority: int | None = None,
        ordering_key: Any = None,
    ) -> PendingEvent | None: ...

    def _submit(self, pending: PendingEvent) -> None: ...

    def _in_session(self, pending: PendingEvent, session: Any, outbox: bool) -> None: ...

    def _published_in_session(
        self,
        event: str | object,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        wait: bool,
        durability: Level | None,
        session: Any,
        outbox: bool,
        cause: str | None = None,
        priority: int | None = None,
        ordering_key: Any = None,
    ) -> EmitReceipt | None: ...

    async def _publish(
        self, pending: PendingEvent | None, wait: bool, timeout: float | None, durability: Level | None = None
    ) -> EmitReceipt | None: ...

    async def _stored(
        self, pending: PendingEvent, timeout: float, whole: float | None = None
    ) -> EmitReceipt | None: ...


class CausedEmitter:
    """An :class:`Emitter` that records the event that caused what it emits (``Emitter.caused_by``).

    A listener that declares a parameter annotated ``Emitter`` receives one from the worker:
    its follow-up events link to the event the listener is handling (``taskemit status``
    shows the cause).
    """

    __slots__ = ("cause", "emitter")

    def __init__(self, emitter: _Emitting, cause: str | None) -> None:
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
