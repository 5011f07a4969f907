"""``Emitter``: turns ``emit(event_id, ...)`` into one stored arq job per listener.

``emit`` is synchronous and never waits for Redis: it checks the arguments against every
listener, encodes the jobs, and appends them to an in-memory buffer. A single flusher task
stores whatever has accumulated in one pipelined round trip, so concurrent emits coalesce
into batches. ``emit`` may be called from the emitter's event loop or from any other thread
(Litestar runs sync handlers in worker threads).

Here are the emitter's start-up and close (the flush on close, the spool at shutdown), ``emit``
and the flusher task; its awaited forms, ``publish`` and ``publish_once``, are in ``publishing``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from ..errors import (
    InvalidArgument,
    RedisUnavailable,
    StateError,
    UnknownEventError,
    redact_url,
)
from ..monitor.catalog import read_catalog
from ..settings import Settings, load_settings
from ..store.codec import get_codec, warn_if_pickle
from ..store.connection import raise_if_cancelled, redis_client
from ..store.durability import check_durability
from .backlog import Backlog
from .caused import CausedEmitter
from .fanout import Fanout
from .flusher import BacklogFlusher
from .listener import Listener
from .publishing import Publishing
from .registry import Registry
from .writer import EMIT, EventWriter, PendingEvent

if TYPE_CHECKING:
    from .transaction import Transactions

__all__ = ("Emitter",)

logger = logging.getLogger("taskemit.emitter")

_BATCH_SIZE = 500
_RETRY_FIRST_DELAY = 0.05
_RETRY_MAX_DELAY = 2.0


class Emitter(Publishing):
    """Durable event emitter: an async context manager with Litestar's ``emit`` signature."""

    __slots__ = (
        "_backlog",
        "_closing",
        "_codec",
        "_fanout",
        "_flusher",
        "_loop",
        "_loop_thread",
        "_outbox",
        "_redis",
        "_refresher",
        "_stored_jobs",
        "_transactions",
        "_wake",
        "_writer",
        "listeners",
        "registry",
        "settings",
    )

    #: How ``drain_on_exit`` runs the stored jobs: set by ``taskemit.testing`` (the emitter
    #: itself never runs jobs). Called with the emitter, the job ids and a timeout.
    drainer: ClassVar[Callable[[Emitter, list[str], float | None], Awaitable[None]] | None] = None

    def __init__(
        self,
        listeners: Iterable[Any] | None = None,
        settings: Settings | None = None,
        *,
        redis: aioredis.Redis | None = None,
        catalog: bool | None = None,
        outbox: Any = None,
    ) -> None:
        """``listeners``: the listeners to fan out to. None: those the live workers registered in
        the catalog (a dispatcher that does not import the handlers' code). ``catalog=True``
        adds the catalog's listeners to the given ones. ``outbox``: a SQLAlchemy engine (or a
        list of them) whose outbox table this emitter relays from the start: entering checks
        that the table is there (OutboxTableMissing) and relays the rows earlier processes left."""
        self.settings = settings if settings is not None else load_settings()
        self.registry = listeners if isinstance(listeners, Registry) else Registry(listeners or ())
        self._fanout = Fanout(
            self.registry, self.settings, use_catalog=listeners is None if catalog is None else catalog
        )
        self._fanout.unknown_event = self._unknown_event
        self._refresher: asyncio.Task[None] | None = None
        #: event id -> listeners, as Litestar's backends expose it.
        self.listeners: Mapping[str, tuple[Listener, ...]] = self.registry.by_event()
        self._codec = get_codec(self.settings.serializer)
        self._redis = redis
        #: accepted events not stored yet: in memory, then in the spool
        self._backlog = Backlog(self.settings)
        self._stored_jobs: list[str] = []
        #: stores the flusher's batches (set on entering)
        self._writer: EventWriter | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._wake: asyncio.Event | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._closing = False
        #: the engines given as ``outbox``; the staged events and relays (made when first needed)
        self._outbox: list[Any] = list(outbox) if isinstance(outbox, list | tuple) else [outbox] if outbox else []
        self._transactions: Transactions | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Emitter:
        if self._flusher is not None:
            raise StateError("Emitter is already entered")
        warn_if_pickle(self.settings.serializer)
        if self._redis is None:
            # a batch ends with a wait for replicas when a durability level asks for one
            self._redis = redis_client(
                self.settings, timeout=self.settings.redis_timeout + self.settings.durability_timeout
            )
        try:
            async with asyncio.timeout(self.settings.connect_timeout + self.settings.publish_timeout):
                await EMIT.load(self._redis)
                await check_durability(
                    self._redis,
                    self.settings.durability,
                    redact_url(self.settings.redis_url),
                    self.settings.keys.routes,
                )
        except (RedisError, OSError) as exc:  # emits are buffered until Redis answers (TimeoutError included)
            logger.warning("Redis at %s is not reachable yet: %s", redact_url(self.settings.redis_url), exc)
        except BaseException:
            await self._redis.aclose()
            self._redis = None
            raise
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
        self._writer = EventWriter(self._redis, self.settings)
        for (name, worker, shard), route in self._fanout.routes():  # routes seen before entering
            if worker is None and shard == 0:
                self._writer.register(name, route.queue)
        self._fanout.on_new_route = self._writer.register
        if self._fanout.needs_catalog:
            await self._read_catalog()
            self._refresher = self._loop.create_task(self._refresh_catalog(), name="taskemit-catalog")
        self._closing = False
        self._backlog.closed = False
        flushing = BacklogFlusher(self._backlog, self._writer, self._redis, self.settings, self._stored_jobs)
        self._flusher = self._loop.create_task(self._flush_forever(flushing), name="taskemit-flusher")
        waiting = self._backlog.check_spool()  # events an earlier emitter could not store
        if waiting and self._backlog.spool is not None:
            logger.info("storing %d events from the spool %s", waiting, self._backlog.spool.path)
            self._wake.set()
        if self._outbox:
            try:
                await self.relay_outbox(*self._outbox)
            except BaseException as exc:
                await self.__aexit__(type(exc), exc, exc.__traceback__)
                raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        flusher, self._flusher = self._flusher, None
        if flusher is None:
            return
        if self._refresher is not None:
            self._refresher.cancel()
            self._refresher = None
        if self._transactions is not None:  # what the relays sent is stored by the flusher below
            await self._transactions.close(self.settings.shutdown_timeout)
        self._closing = True
        self._backlog.close_intake()
        assert self._wake is not None and self._redis is not None
        self._wake.set()
        try:
            await asyncio.wait_for(flusher, self.settings.shutdown_timeout)
        except TimeoutError:
            self._backlog.spill_all(
                f"Redis did not accept them within shutdown_timeout={self.settings.shutdown_timeout}s",
                self.settings.redis_url,
            )
        try:
            if self.settings.drain_on_exit and exc_type is None:
                await self.drain()
        finally:
            if self._writer is not None:
                self._fanout.on_new_route = None
                await self._writer.close()
                self._writer = None
            self._backlog.close()
            await self._redis.aclose()
            self._redis = None
            self._loop = None

    async def drain(self, timeout: float | None = None) -> None:
        """Run the jobs this emitter stored until every one has finished (for tests).

        Needs ``drain_on_exit = true`` (only then does the emitter remember its jobs) and
        ``taskemit.testing`` imported (the pytest plugin imports it), which runs them in an
        in-process worker. Raises TimeoutError if ``timeout`` seconds pass first.
        """
        if not self.settings.drain_on_exit:
            raise StateError(
                "drain() needs the setting drain_on_exit = true: only then does the emitter remember "
                "the jobs it stored (TASKEMIT_DRAIN_ON_EXIT=1 in tests)"
            )
        drainer = type(self).drainer
        if drainer is None:
            raise StateError(
                "drain() runs jobs with taskemit.testing, which is not imported; its pytest plugin "
                "imports it, elsewhere `import taskemit.testing`"
            )
        if self._redis is None:
            raise StateError("drain() needs an entered emitter: `async with Emitter(...) as emitter`")
        job_ids = list(self._stored_jobs)
        self._stored_jobs.clear()
        if job_ids:
            await drainer(self, job_ids, timeout)

    async def flush_spool(self, timeout: float | None = None) -> int:
        """Store every event waiting in the spool now; returns how many are left there (0 when done).

        Raises RedisUnavailable if Redis does not take them within ``timeout`` seconds.
        """
        spool = self._backlog.spool
        if spool is None or self._wake is None:
            raise StateError("flush_spool() needs an entered emitter with the spool setting on")
        self._backlog.spool_waiting = True
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._backlog.spool_waiting:
            if deadline is not None and time.monotonic() > deadline:
                raise RedisUnavailable(self.settings.redis_url, f"the spool was not stored within {timeout:g}s")
            await asyncio.sleep(0.05)
        return spool.count()

    @property
    def redis(self) -> aioredis.Redis:
        """The emitter's Redis client (while it is entered)."""
        if self._redis is None:
            raise StateError("Emitter not initialized: use `async with Emitter(...) as emitter`")
        return self._redis

    async def relay_outbox(self, *binds: Any, central: bool = False) -> list[Any]:
        """Relay the outbox table of each SQLAlchemy engine in ``binds`` from now until the emitter
        closes, and return the relays; raises OutboxTableMissing first if a table is not there.
        ``central``: a relay process's (``taskemit outbox relay``), which takes even the newest rows."""
        if self._flusher is None or self._closing:
            raise StateError("relay_outbox() needs an entered emitter: `async with Emitter(...) as emitter`")
        return await self._in_transactions().start(binds, in_process=not central)

    def _in_transactions(self) -> Transactions:
        if self._transactions is None:
            from .transaction import Transactions  # SQLAlchemy: imported when a session or an outbox is given

            self._transactions = Transactions(self.settings, self._submit, lambda: self.redis)
        return self._transactions

    # -- emitting ----------------------------------------------------------------------

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
        """Enqueue one job per listener of ``event``; returns without waiting for Redis.

        ``event`` is a string event id (with the listeners' arguments), or an instance of an
        event class (a dataclass, pydantic model or msgspec Struct; nothing else).

        ``priority`` (0 to 100) replaces the listeners' own for this event's jobs, and
        ``ordering_key`` (a str, int or UUID) orders them: the jobs of one listener with the same
        key run one at a time, in emit order (flow control).

        ``session``: a SQLAlchemy ``Session`` or ``AsyncSession``. The event, checked and
        encoded, becomes a row of the outbox table in the session's transaction (a
        ``session.add``, no I/O): the commit keeps it with the app's rows, and a relay stores it
        in Redis; a rollback drops it. ``outbox=False``: no row, the event is emitted when the
        transaction commits (lost if the process dies between the commit and the store).
        (``priority``, ``ordering_key``, ``session`` and ``outbox`` are this method's own, not
        event arguments: emit an event argument of one of these names in a typed event.)

        Raises, before anything is enqueued: StateError if the emitter is not entered,
        UnknownEventError for an event without listeners, ListenerArgumentError if a
        listener cannot take the arguments (or they lack its ordering or rate key),
        InvalidArgument for a bad priority or key, PayloadEncodeError if they cannot be
        encoded, PayloadTooLarge if a job would exceed ``max_payload_bytes``,
        EmitBufferFull if too many events are waiting for Redis.
        """
        pending = self._prepare(event, args, kwargs, priority=priority, ordering_key=ordering_key)
        if pending is None:
            return
        if session is None:
            self._submit(pending)
        else:
            self._in_session(pending, session, outbox)

    def _in_session(self, pending: PendingEvent, session: Any, outbox: bool) -> None:
        assert self._loop is not None
        try:
            self._in_transactions().stage(pending, session, outbox, self._loop)
        except TypeError as exc:
            raise InvalidArgument(str(exc)) from None

    def caused_by(self, event_uuid: str | None) -> CausedEmitter:
        """This emitter, recording ``event_uuid`` as the cause of what it emits (what a listener's
        injected ``Emitter`` is: the follow-up's record links to the event that caused it)."""
        return CausedEmitter(self, event_uuid)

    def _prepare(
        self,
        event: str | object,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        once_key: str | None = None,
        cause: str | None = None,
        priority: int | None = None,
        ordering_key: Any = None,
    ) -> PendingEvent | None:
        if self._flusher is None or self._closing:
            raise StateError("Emitter not initialized: use `async with Emitter(...) as emitter`")
        return self._fanout.prepare(event, args, kwargs, once_key, cause, priority, ordering_key)

    def _unknown_event(self, event_id: str) -> Exception:
        return UnknownEventError(event_id)

    # -- the catalog -------------------------------------------------------------------

    async def _read_catalog(self) -> None:
        assert self._redis is not None
        try:
            async with asyncio.timeout(self.settings.publish_timeout):
                entries = await read_catalog(self._redis, space=self.settings.keys)
        except (RedisError, OSError) as exc:
            logger.warning("reading the listener catalog failed (%s); retrying", exc)
            return
        self._fanout.catalog.update(entries)

    async def _refresh_catalog(self) -> None:
        while True:
            raise_if_cancelled()
            await asyncio.sleep(self.settings.catalog_refresh)
            await self._read_catalog()

    def _submit(self, pending: PendingEvent) -> None:
        on_loop = threading.get_ident() == self._loop_thread
        self._backlog.add(pending, on_loop)
        assert self._loop is not None and self._wake is not None
        if on_loop:
            self._wake.set()
        else:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def _flush_forever(self, flushing: BacklogFlusher) -> None:
        assert self._wake is not None
        while True:
            raise_if_cancelled()
            await self._wake.wait()
            self._wake.clear()
            await flushing.flush()
            if self._closing and not self._backlog:
                return
