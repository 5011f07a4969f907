"""Storing what an emitter accepted: batch after batch from its backlog, until none is left.

The emitter's single flusher task calls :meth:`BacklogFlusher.flush` whenever emits wake it.
Every reply has a defined outcome for every event of the batch (``store/faults.py``):

- stored (or stored already, by an earlier send whose reply was lost): what ``publish`` waits
  for is resolved, once the event's durability level holds; until then the event stays in the
  emitter's custody (the spool) and is stored again, once, by its uuid;
- not stored yet: a lost connection, or Redis out of memory, loading, busy, short of replicas,
  or no longer the primary (READONLY: the connections are dropped, and the next batch goes to
  whatever is the primary now): the events go back first in line and are sent again with
  backoff; a script Redis lost (a restart) is loaded first;
- a reply that proves the event bad (a key of the wrong type, say): the event is parked in the
  spool with the error, for ``taskemit spool flush --parked`` once the cause is fixed, and
  what waits for it gets the error. Nothing accepted is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from ..settings import Settings
from ..store.connection import raise_if_cancelled
from ..store.durability import durability_holds, strongest, wait_command
from ..store.faults import Fault, fault_of
from .backlog import Backlog
from .writer import EMIT, EventWriter, PendingEvent

__all__ = ("BacklogFlusher",)

logger = logging.getLogger("taskemit.emitter")

_BATCH_SIZE = 500
_RETRY_FIRST_DELAY = 0.05
_RETRY_MAX_DELAY = 2.0
#: events stored but not yet confirmed durable at most: past it, a batch waits for its replicas
_MAX_AWAITING = 10 * _BATCH_SIZE


@dataclass(slots=True)
class _Settled:
    """What one round trip came to, event by event."""

    done: list[PendingEvent] = field(default_factory=list)
    #: not stored yet (a transient error reply): send again
    again: list[PendingEvent] = field(default_factory=list)
    #: stored, but the durability level did not hold yet
    unconfirmed: list[PendingEvent] = field(default_factory=list)
    #: the reply proves the event bad: keep it aside, with the error
    parked: list[tuple[PendingEvent, BaseException]] = field(default_factory=list)
    faults: set[Fault] = field(default_factory=set)


class BacklogFlusher:
    """Stores an emitter's backlog through its writer (used by the emitter's flusher task only)."""

    __slots__ = ("_awaiting", "_backlog", "_redis", "_stored_jobs", "_writer", "settings")

    def __init__(
        self, backlog: Backlog, writer: EventWriter, redis: aioredis.Redis, settings: Settings, stored_jobs: list[str]
    ) -> None:
        self._backlog = backlog
        self._writer = writer
        self._redis = redis
        self.settings = settings
        #: with drain_on_exit, the job ids stored so far (the emitter's list, appended to)
        self._stored_jobs = stored_jobs
        #: stored from the buffer, durable once a later wait on the same connection says so: while
        #: more batches follow, one wait after the last covers them all (a wait per batch would hold
        #: the connection for a round trip to the replicas each time)
        self._awaiting: list[PendingEvent] = []

    async def flush(self) -> None:
        """Store the buffer, then whatever waits in the spool, until both are empty."""
        settings = self.settings
        delay = _RETRY_FIRST_DELAY
        while (taken := self._backlog.next_batch(_BATCH_SIZE)) is not None:
            batch, from_spool = taken
            try:
                raise_if_cancelled()
            except asyncio.CancelledError:
                self._backlog.give_back(batch, from_spool)
                self._give_back_awaiting()
                raise
            level = strongest({pending.durability for pending in [*batch, *self._awaiting]})
            # with more to store from the buffer, the wait comes after a later batch
            deferred = not from_spool and len(self._backlog) > 0 and len(self._awaiting) + len(batch) < _MAX_AWAITING
            wait = None if deferred else wait_command(level, settings.min_replicas, settings.durability_timeout)
            try:
                # a frozen Redis fails, never hangs
                async with asyncio.timeout(settings.publish_timeout + (settings.durability_timeout if wait else 0)):
                    replies, waited = await self._writer.store(batch, wait)
            except asyncio.CancelledError:
                self._backlog.give_back(batch, from_spool)
                self._give_back_awaiting()
                raise
            except (RedisError, OSError, TimeoutError) as exc:  # lost: any of them may be stored already
                for pending in batch:
                    pending.resent = True  # sent again by uuid: stored once whatever happened
                self._backlog.give_back(batch, from_spool)
                self._give_back_awaiting()
                logger.warning("storing %d events failed (%s); retrying in %.2fs", len(batch), exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_DELAY)
                continue
            except Exception as exc:  # a bug in taskemit: keep the events, do not loop on them
                logger.exception("storing %d events failed; they are parked in the spool", len(batch))
                self._backlog.settle(batch, from_spool, [], [], [], [(pending, exc) for pending in batch])
                continue
            holds = wait is None or durability_holds(level, settings.min_replicas, waited)
            if wait is not None and isinstance(waited, Exception):
                logger.error("waiting for durability %r failed: %s", level, waited)
            settled = self._settle(batch, replies, holds, deferred)
            if wait is not None and self._awaiting:  # the wait covered the batches stored before it too
                earlier, self._awaiting = self._awaiting, []
                if holds:
                    self._resolve(earlier)
                else:
                    settled.unconfirmed += earlier
            self._backlog.settle(batch, from_spool, settled.done, settled.again, settled.unconfirmed, settled.parked)
            if Fault.ROLE in settled.faults:  # a failover: reconnect to the primary
                await self._writer.reconnect()
            if Fault.NOSCRIPT in settled.faults:  # Redis restarted or its script cache was flushed
                await self.load_script()
            if settled.faults - {Fault.NOSCRIPT} or settled.unconfirmed:
                reason = ", ".join(sorted(f.value for f in settled.faults)) or f"durability {level!r} not reached"
                logger.warning(
                    "%d events not stored yet, %d not durable yet (%s); retrying in %.2fs",
                    len(settled.again),
                    len(settled.unconfirmed),
                    reason,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_DELAY)
            else:
                delay = _RETRY_FIRST_DELAY

    def _give_back_awaiting(self) -> None:
        """A lost connection: the batches not yet confirmed durable are sent again (stored once)."""
        for pending in self._awaiting:
            pending.resent = True
        self._backlog.give_back(self._awaiting, False)
        self._awaiting = []

    def _settle(self, batch: list[PendingEvent], replies: list[Any], holds: bool, deferred: bool = False) -> _Settled:
        """Sort a round trip's events by their replies; resolve what ``publish`` waits for
        (with ``deferred``, those that wait for a durability level are confirmed by a later wait)."""
        settled = _Settled()
        for pending, reply in zip(batch, replies, strict=True):
            if isinstance(reply, BaseException):
                fault = fault_of(reply)
                if fault is Fault.BAD:
                    logger.error("event %s cannot be stored (%s); it is parked in the spool", pending.event_uuid, reply)
                    settled.parked.append((pending, reply))
                else:
                    settled.faults.add(fault)
                    settled.again.append(pending)
                continue
            pending.recorded = bool(reply)  # 0: its record was there already
            if pending.durability != "memory" and deferred:
                self._awaiting.append(pending)
                continue
            if not holds and pending.durability != "memory":
                pending.unconfirmed = True
                settled.unconfirmed.append(pending)
                continue
            settled.done.append(pending)
            self._resolve([pending])
        return settled

    def _resolve(self, events: list[PendingEvent]) -> None:
        """What waits for ``events`` (stored, and durable as asked) learns it."""
        for pending in events:
            future = self._backlog.future_of(pending)
            spooled = pending.future is None and future is not None  # spooled by this emitter: it was stored
            # a record there already: stored before by this emitter, unless a publish_once key was used
            stored = pending.recorded or not pending.once or spooled or pending.resent
            if stored and self.settings.drain_on_exit:
                self._stored_jobs.extend(pending.jobs.values())
            if future is not None and not future.done():
                future.set_result(pending.receipt() if stored else None)

    async def load_script(self) -> None:
        try:
            async with asyncio.timeout(self.settings.publish_timeout):
                await EMIT.load(self._redis)
        except (RedisError, OSError) as exc:
            logger.warning("loading the emit script failed (%s); retrying", exc)
            await asyncio.sleep(_RETRY_FIRST_DELAY)
