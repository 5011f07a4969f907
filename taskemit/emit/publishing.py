"""Publishing: an emit that returns once its jobs are stored, with their ids in an ``EmitReceipt``.

``publish`` waits until the event is stored (at the durability level asked for) and, with
``wait=True``, until every listener has finished, raising the failures of those that failed for
good. ``publish_once`` stores an event at most once per key, however many processes publish it.
In a SQLAlchemy session, publishing stages the event in the session's transaction and returns its
receipt at once. :class:`Publishing` gives these to the ``Emitter``, which buffers, stores and
flushes the events.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgument, ListenerError, NotDurable, RedisUnavailable, WaitTimeout
from ..monitor.status import wait_for_event
from ..settings import Settings
from ..state import JobState
from ..store.durability import LEVELS, Level
from .receipt import EmitReceipt
from .writer import PendingEvent

if TYPE_CHECKING:
    from redis import asyncio as aioredis

__all__ = ("Publishing",)


class Publishing:
    """The ``Emitter``'s ``publish`` and ``publish_once``: emits awaited until their jobs are stored."""

    __slots__ = ()

    settings: Settings

    if TYPE_CHECKING:

        @property
        def redis(self) -> aioredis.Redis: ...

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
        """Like ``emit``, but return once the jobs are stored, with their ids (an EmitReceipt).

        ``durability`` ("memory", "replicated" or "fsync"; default: the setting) is when the
        event counts as stored: past ``publish_timeout`` without it, NotDurable (the event is
        kept in the spool and stored again until the level holds). ``wait=True`` also waits
        until every listener has finished (retries included) and raises an ``ExceptionGroup``
        of ``ListenerError`` (one per listener that failed for good, naming the original type
        and message). ``timeout`` bounds the whole call; past it, WaitTimeout. ``priority`` and
        ``ordering_key`` are ``emit``'s. (``wait``, ``timeout`` and ``durability`` are this
        method's own: emit an event argument of one of these names with ``emit`` or in a typed
        event; ``priority`` and ``ordering_key`` are both methods' own: in a typed event.)

        Returns None only when the event has no listeners and ``on_unknown_event`` is "ignore".

        With ``session`` (see ``emit``), it returns the receipt at once: the event is stored
        when the transaction commits, so it cannot be waited for here (``wait=True`` raises).
        """
        if session is not None:
            return self._published_in_session(
                event, args, kwargs, wait, durability, session, outbox, priority=priority, ordering_key=ordering_key
            )
        pending = self._prepare(event, args, kwargs, priority=priority, ordering_key=ordering_key)
        return await self._publish(pending, wait, timeout, durability)

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
    ) -> EmitReceipt | None:
        """``publish(..., session=...)``: staged in the session, its receipt at once."""
        if wait:
            raise InvalidArgument(
                "publish(..., session=...) cannot wait for the listeners: the event is stored once the "
                "session's transaction commits, after this call"
            )
        pending = self._prepare(event, args, kwargs, cause=cause, priority=priority, ordering_key=ordering_key)
        if pending is None:
            return None
        if durability is not None:  # the level its relay stores it with
            pending.durability = durability
        self._in_session(pending, session, outbox)
        return pending.receipt()

    async def publish_once(
        self,
        key: str,
        event: str | object,
        *args: Any,
        priority: int | None = None,
        ordering_key: Any = None,
        **kwargs: Any,
    ) -> EmitReceipt | None:
        """Publish unless an event with the same ``key`` was already published; exactly once.

        The event uuid and the job ids derive from ``key``, and the check and the writes are
        one atomic step in Redis, so any number of processes publishing the same key store
        one event between them (for as long as its record is kept: ``event_retention``).
        Returns the receipt, or None when the key was already used.
        """
        pending = self._prepare(event, args, kwargs, once_key=key, priority=priority, ordering_key=ordering_key)
        if pending is None:
            return None
        return await self._stored(pending, self.settings.publish_timeout)

    async def _publish(
        self, pending: PendingEvent | None, wait: bool, timeout: float | None, durability: Level | None = None
    ) -> EmitReceipt | None:
        if pending is None:
            return None
        if durability is not None:
            if durability not in LEVELS:
                raise InvalidArgument(f"durability must be one of {', '.join(LEVELS)}; got {durability!r}")
            pending.durability = durability
        started = time.monotonic()
        receipt = await self._stored(pending, self.settings.publish_timeout, timeout)
        if not wait or receipt is None:
            return receipt
        left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
        status = await wait_for_event(self.redis, self.settings, receipt.event_uuid, timeout=left, max_poll=0.1)
        failures = [
            ListenerError(
                str((job.error or {}).get("type") or job.status),
                str((job.error or {}).get("message") or ""),
                listener=job.listener,
                job_id=job.job_id,
            )
            for job in status.jobs
            if job.status in (JobState.FAILED, JobState.ABORTED)
        ]
        if failures:
            raise ExceptionGroup(f"{len(failures)} listener(s) of event {receipt.event_id} failed", failures)
        return receipt

    async def _stored(self, pending: PendingEvent, timeout: float, whole: float | None = None) -> EmitReceipt | None:
        """Submit ``pending`` and wait until it is stored, at most ``timeout`` seconds (``publish_timeout``),
        or ``whole``, the caller's timeout, when that is shorter."""
        # a thread-safe future: publish may be awaited on another loop than the emitter's
        # (Litestar's test clients run the app's loop in a thread of its own)
        pending.future = concurrent.futures.Future()
        self._submit(pending)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(pending.future), min(timeout, whole or timeout))
        except TimeoutError:
            in_flight = not pending.abandon()  # still buffered: it never will be stored now
            if pending.unconfirmed:
                raise NotDurable(
                    f"event {pending.event_uuid} is stored, but durability {pending.durability!r} did not hold "
                    f"within {min(timeout, whole or timeout):g}s (min_replicas={self.settings.min_replicas}); it is "
                    "kept in the spool and stored again until it does"
                ) from None
            maybe = "; it was on its way and may still be stored" if in_flight else ""
            if whole is not None and whole < timeout:
                raise WaitTimeout(f"the event was not stored within the timeout of {whole:g}s{maybe}") from None
            raise RedisUnavailable(
                self.settings.redis_url, f"the event was not stored within publish_timeout={timeout:g}s{maybe}"
            ) from None
