"""``Emitter``: turns ``emit(event_id, ...)`` into one stored arq job per listener.

``emit`` is synchronous and never waits for Redis: it checks the arguments against every
listener, encodes the jobs, and appends them to an in-memory buffer. A single flusher task
stores whatever has accumulated in one pipelined round trip, so concurrent emits coalesce
into batches. ``emit`` may be called from the emitter's event loop or from any other thread
(Litestar runs sync handlers in worker threads).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, ClassVar

from redis import asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from ..errors import (
    ListenerConfigError,
    PayloadTooLarge,
    RedisUnavailable,
    StateError,
    UnknownEventError,
    redact_url,
)
from ..settings import Settings, load_settings
from ..store.codec import META_KWARG, get_codec, warn_if_pickle
from ..store.keys import ONCE_NAMESPACE, random_uuid
from .backlog import Backlog
from .listener import Listener
from .receipt import EmitReceipt
from .registry import Registry
from .writer import EMIT, EventWriter, PendingEvent, Route

__all__ = ("Emitter",)

logger = logging.getLogger("taskemit.emitter")

_BATCH_SIZE = 500
_RETRY_FIRST_DELAY = 0.05
_RETRY_MAX_DELAY = 2.0


class Emitter:
    """Durable event emitter: an async context manager with Litestar's ``emit`` signature."""

    __slots__ = (
        "_backlog",
        "_closing",
        "_codec",
        "_flusher",
        "_loop",
        "_loop_thread",
        "_redis",
        "_routes",
        "_stored_jobs",
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
        listeners: Iterable[Any],
        settings: Settings | None = None,
        *,
        redis: aioredis.Redis | None = None,
    ) -> None:
        self.settings = settings if settings is not None else load_settings()
        self.registry = listeners if isinstance(listeners, Registry) else Registry(listeners)
        #: event id -> listeners, as Litestar's backends expose it.
        self.listeners: Mapping[str, tuple[Listener, ...]] = self.registry.by_event()
        self._codec = get_codec(self.settings.serializer)
        self._redis = redis
        #: accepted events not stored yet: in memory, then in the spool
        self._backlog = Backlog(self.settings)
        self._stored_jobs: list[str] = []
        self._routes: dict[str, Route] = {}
        #: stores the flusher's batches (set on entering)
        self._writer: EventWriter | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._wake: asyncio.Event | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._closing = False

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Emitter:
        if self._flusher is not None:
            raise StateError("Emitter is already entered")
        warn_if_pickle(self.settings.serializer)
        if self._redis is None:
            # bounded waits: the calls below are bounded by publish_timeout each (a socket timeout would
            # do the same at a cost on every read)
            self._redis = aioredis.Redis.from_url(
                self.settings.redis_url, socket_connect_timeout=self.settings.connect_timeout
            )
        try:
            async with asyncio.timeout(self.settings.connect_timeout + self.settings.publish_timeout):
                await EMIT.load(self._redis)
        except (RedisError, OSError) as exc:  # emits are buffered until Redis answers (TimeoutError included)
            logger.warning("Redis at %s is not reachable yet: %s", redact_url(self.settings.redis_url), exc)
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
        self._writer = EventWriter(self._redis, self.settings)
        for name, route in self._routes.items():  # routes seen before entering
            self._writer.register(name, route.queue)
        self._closing = False
        self._flusher = self._loop.create_task(self._flush_forever(), name="taskemit-flusher")
        waiting = self._backlog.check_spool()  # events an earlier emitter could not store
        if waiting and self._backlog.spool is not None:
            logger.info("storing %d events from the spool %s", waiting, self._backlog.spool.path)
            self._wake.set()
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
        self._closing = True
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
        job_ids, self._stored_jobs = self._stored_jobs, []
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

    # -- emitting ----------------------------------------------------------------------

    def emit(self, event_id: str, *args: Any, **kwargs: Any) -> None:
        """Enqueue one job per listener of ``event_id``; returns without waiting for Redis.

        Raises, before anything is enqueued: StateError if the emitter is not entered,
        UnknownEventError for an event without listeners, ListenerArgumentError if a
        listener cannot take the arguments, PayloadEncodeError if they cannot be encoded,
        PayloadTooLarge if a job would exceed ``max_payload_bytes``,
        EmitBufferFull if too many events are waiting for Redis.
        """
        pending = self._prepare(event_id, args, kwargs)
        if pending is not None:
            self._submit(pending)

    async def publish(self, event_id: str, *args: Any, **kwargs: Any) -> EmitReceipt | None:
        """Like ``emit``, but return once the jobs are stored, with their ids.

        Returns None only when the event has no listeners and ``on_unknown_event`` is "ignore".
        """
        pending = self._prepare(event_id, args, kwargs)
        if pending is None:
            return None
        return await self._stored(pending)

    async def publish_once(self, key: str, event_id: str, *args: Any, **kwargs: Any) -> EmitReceipt | None:
        """Publish unless an event with the same ``key`` was already published; exactly once.

        The event uuid and the job ids derive from ``key``, and the check and the writes are
        one atomic step in Redis, so any number of processes publishing the same key store
        one event between them (for as long as its record is kept: ``event_retention``).
        Returns the receipt, or None when the key was already used.
        """
        pending = self._prepare(event_id, args, kwargs, once_key=key)
        if pending is None:
            return None
        return await self._stored(pending)

    async def _stored(self, pending: PendingEvent) -> EmitReceipt | None:
        """Submit ``pending`` and wait until it is stored, at most ``publish_timeout`` seconds."""
        # a thread-safe future: publish may be awaited on another loop than the emitter's
        # (Litestar's test clients run the app's loop in a thread of its own)
        pending.future = concurrent.futures.Future()
        self._submit(pending)
        timeout = self.settings.publish_timeout
        try:
            return await asyncio.wait_for(asyncio.wrap_future(pending.future), timeout)
        except TimeoutError:
            in_flight = not pending.abandon()  # still buffered: it never will be stored now
            raise RedisUnavailable(
                self.settings.redis_url,
                f"the event was not stored within publish_timeout={timeout:g}s"
                + ("; it was on its way and may still be stored" if in_flight else ""),
            ) from None

    def _prepare(
        self, event_id: str, args: tuple[Any, ...], kwargs: dict[str, Any], once_key: str | None = None
    ) -> PendingEvent | None:
        if self._flusher is None or self._closing:
            raise StateError("Emitter not initialized: use `async with Emitter(...) as emitter`")
        listeners = self.registry.for_event(event_id)
        if not listeners:
            if self.settings.on_unknown_event == "ignore":
                logger.info("ignoring event %r: no listener is registered for it", event_id)
                return None
            raise self._unknown_event(event_id)
        if META_KWARG in kwargs:
            raise ListenerConfigError(f"{META_KWARG!r} is reserved by taskemit and cannot be emitted")
        for item in listeners:
            item.check_arguments(event_id, args, kwargs)
        space = self.settings.keys
        if once_key is None:
            event_uuid = random_uuid()
            jobs = {item.name: space.new_job_id() for item in listeners}
        else:
            event_uuid = str(uuid.uuid5(ONCE_NAMESPACE, once_key))
            jobs = {item.name: space.new_job_id(seed=f"{event_uuid}:{item.name}") for item in listeners}
        emitted_ms = int(time.time() * 1000)
        job_kwargs = {**kwargs, META_KWARG: {"event": event_uuid, "event_id": event_id}}
        payloads = [self._codec.encode_job(item.name, args, job_kwargs, enqueue_ms=emitted_ms) for item in listeners]
        limit = self.settings.max_payload_bytes
        for item, payload in zip(listeners, payloads, strict=True):
            if len(payload) > limit:
                raise PayloadTooLarge(
                    f"the job of listener {item.name!r} for event {event_id!r} is {len(payload):,} bytes, more "
                    f"than max_payload_bytes={limit:,}; store large data elsewhere and emit a reference to it"
                )
        return PendingEvent(
            EmitReceipt(event_uuid, event_id, jobs, self.settings),
            emitted_ms,
            payloads,
            [self._route(item) for item in listeners],
            once=once_key is not None,
        )

    def _route(self, item: Listener) -> Route:
        """Where ``item``'s jobs go: its queue, its ready set there, the queue's wake channel."""
        route = self._routes.get(item.name)
        if route is None:
            space = self.settings.keys
            queue = space.queue(item.queue or self.settings.queue_name)
            route = Route(queue, space.ready(queue, item.name), space.wake_channel(queue), item.queue is not None)
            self._routes[item.name] = route
            if self._writer is not None:
                self._writer.register(item.name, queue)
        return route

    def _unknown_event(self, event_id: str) -> Exception:
        return UnknownEventError(event_id)

    def _submit(self, pending: PendingEvent) -> None:
        on_loop = threading.get_ident() == self._loop_thread
        self._backlog.add(pending, on_loop)
        assert self._loop is not None and self._wake is not None
        if on_loop:
            self._wake.set()
        else:
            self._loop.call_soon_threadsafe(self._wake.set)

    # -- storing -----------------------------------------------------------------------

    async def _flush_forever(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._flush_buffer()
            if self._closing and not self._backlog:
                return

    async def _flush_buffer(self) -> None:
        """Store the buffer, then whatever waits in the spool, until both are empty."""
        delay = _RETRY_FIRST_DELAY
        while (taken := self._backlog.next_batch(_BATCH_SIZE)) is not None:
            batch, from_spool = taken
            try:
                assert self._writer is not None
                async with asyncio.timeout(self.settings.publish_timeout):  # a frozen Redis fails, never hangs
                    stored = await self._writer.store(batch)
            except asyncio.CancelledError:
                self._backlog.give_back(batch, from_spool)
                raise
            except (RedisError, OSError) as exc:
                self._backlog.give_back(batch, from_spool)
                logger.warning("storing %d events failed (%s); retrying in %.2fs", len(batch), exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_DELAY)
                continue
            except Exception as exc:  # a bug, not an outage: report it to whoever waits
                logger.exception("storing %d events failed", len(batch))
                if from_spool:
                    self._backlog.stop_spool()  # they stay in the spool
                for pending in batch:
                    if pending.future is not None and not pending.future.done():
                        pending.future.set_exception(exc)
                continue
            delay = _RETRY_FIRST_DELAY
            missing_script = self._settle(batch, stored)
            self._backlog.stored(batch, from_spool, stored, missing_script)
            if missing_script:  # Redis restarted or its script cache was flushed: load it, store them again
                await self._load_script()

    def _settle(self, batch: list[PendingEvent], replies: list[Any]) -> list[PendingEvent]:
        """Resolve what ``publish`` waits for; returns the events to store again (script not loaded)."""
        missing_script = []
        for pending, reply in zip(batch, replies, strict=True):
            future = self._backlog.future_of(pending)
            if isinstance(reply, NoScriptError):
                missing_script.append(pending)
                continue
            if isinstance(reply, Exception):  # an error in the script: a bug, not an outage
                logger.error("storing event %s failed in Redis: %s", pending.receipt.event_uuid, reply)
                if future is not None and not future.done():
                    future.set_exception(reply)
                continue
            spooled = pending.future is None and future is not None  # spooled by this emitter: it was stored
            receipt = pending.receipt if reply or not pending.once or spooled else None
            if receipt is not None and self.settings.drain_on_exit:
                self._stored_jobs.extend(receipt.jobs.values())
            if future is not None and not future.done():
                future.set_result(receipt)
        return missing_script

    async def _load_script(self) -> None:
        assert self._redis is not None
        try:
            async with asyncio.timeout(self.settings.publish_timeout):
                await EMIT.load(self._redis)
        except (RedisError, OSError) as exc:
            logger.warning("loading the emit script failed (%s); retrying", exc)
            await asyncio.sleep(_RETRY_FIRST_DELAY)
