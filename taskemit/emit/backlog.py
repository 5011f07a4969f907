"""``Backlog``: where accepted events wait for Redis, in memory first, then on disk.

An emitted event goes to the memory buffer (``emit_buffer_size`` events at most). Past that,
while Redis does not take them, events go to the spool (``spool.py``); when both are full,
``emit`` raises or, off the emitter's event loop, blocks (``on_spool_full``). The flusher takes
batches from the buffer first, then from the spool, and tells the backlog what Redis stored.
Closing, what is still buffered goes to the spool; only what does not fit there is lost, and
logged as lost.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sqlite3
import threading
import time
from collections import deque
from typing import Any

from ..errors import EmitBufferFull, RedisUnavailable, StateError
from ..settings import Settings
from .receipt import EmitReceipt
from .spool import Spool
from .writer import PendingEvent

__all__ = ("Backlog",)

logger = logging.getLogger("taskemit.emitter")

Future = concurrent.futures.Future[EmitReceipt | None] | asyncio.Future[EmitReceipt | None]


class Backlog:
    """The buffer and the spool of one emitter. ``add`` may be called from any thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.buffer: deque[PendingEvent] = deque()
        #: None when the spool setting is off
        self.spool: Spool | None = Spool(settings) if settings.spool else None
        #: True while the spool may hold events to store
        self.spool_waiting = False
        #: publish futures of events this emitter spooled, by event uuid
        self._spooled_futures: dict[str, Future] = {}
        #: held while an event joins the buffer and while intake closes: an emit from another
        #: thread is in the buffer before the flusher's last look, or refused
        self._intake = threading.Lock()
        self.closed = False

    def __len__(self) -> int:
        return len(self.buffer)

    # -- accepting -----------------------------------------------------------------------------

    def add(self, pending: PendingEvent, on_loop: bool) -> None:
        """Keep ``pending`` until it is stored; EmitBufferFull when neither buffer nor spool has room,
        StateError once intake is closed."""
        if self._append(pending):
            return
        if not self._spill(pending, on_loop):
            raise EmitBufferFull(
                f"{len(self.buffer)} events are waiting to be stored in Redis "
                f"(emit_buffer_size={self.settings.emit_buffer_size})"
                + ("" if self.spool is None else f" and the spool {self.spool.path} is full or unwritable")
                + "; is Redis reachable?"
            )

    def _spill(self, pending: PendingEvent, on_loop: bool) -> bool:
        """Write an event that does not fit in the buffer to the spool; False if it cannot be kept."""
        if self.spool is None:
            return False
        deadline = time.monotonic() + self.settings.spool_block_timeout
        while True:
            try:
                if self.spool.add([pending]):
                    if pending.future is not None:
                        self._spooled_futures[pending.event_uuid] = pending.future
                    self.spool_waiting = True
                    return True
            except (OSError, sqlite3.Error) as exc:
                logger.error("cannot write to the spool %s: %s", self.spool.path, exc)
                return False
            # the spool is full too
            if self.settings.on_spool_full == "raise" or on_loop:
                return False  # blocking the emitter's own loop would keep the flusher from making room
            if self._append(pending):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def _append(self, pending: PendingEvent) -> bool:
        """Put ``pending`` in the buffer if it has room (False if not); StateError once closed."""
        with self._intake:
            if self.closed:
                raise StateError("the emitter is closing: the event was not accepted")
            if len(self.buffer) >= self.settings.emit_buffer_size:
                return False
            self.buffer.append(pending)
            return True

    def close_intake(self) -> None:
        """Accept nothing more: what is in the buffer now is all the flusher has to store."""
        with self._intake:
            self.closed = True

    # -- the flusher's side --------------------------------------------------------------------

    def check_spool(self) -> int:
        """At start: how many events an earlier emitter left in the spool (they will be stored)."""
        if self.spool is None or not self.spool.exists():
            return 0
        try:
            waiting = self.spool.count()
        except (OSError, sqlite3.Error) as exc:
            logger.error("cannot read the spool %s: %s", self.spool.path, exc)
            return 0
        self.spool_waiting = waiting > 0
        return waiting

    def next_batch(self, size: int) -> tuple[list[PendingEvent], bool] | None:
        """Up to ``size`` events to store, and whether they come from the spool; None when none wait."""
        while self.buffer:
            batch = [self.buffer.popleft() for _ in range(min(size, len(self.buffer)))]
            batch = [pending for pending in batch if pending.take()]  # publish gave up on the others
            if batch:
                return batch, False
        if self.spool is None or not self.spool_waiting:
            return None
        batch = self.spool.read(size)
        if not batch:
            self.spool_waiting = False
            return None
        return batch, True

    def give_back(self, batch: list[PendingEvent], from_spool: bool) -> None:
        """Redis did not take ``batch``: it goes first again (spooled events never left the spool)."""
        if not from_spool:
            self.buffer.extendleft(reversed(batch))
            self._trim()

    def future_of(self, pending: PendingEvent) -> Future | None:
        """What waits for ``pending``: its publish, or the publish of the event it was spooled as."""
        return pending.future or self._spooled_futures.pop(pending.event_uuid, None)

    def settle(
        self,
        batch: list[PendingEvent],
        from_spool: bool,
        done: list[PendingEvent],
        again: list[PendingEvent],
        unconfirmed: list[PendingEvent],
        parked: list[tuple[PendingEvent, BaseException]],
    ) -> None:
        """After a round trip: what is ``done`` leaves the backlog; what is to be sent ``again``
        goes first in line; what is stored but ``unconfirmed`` (its durability level did not hold
        yet) is kept in the spool until it does; what the reply proved bad is ``parked`` in the
        spool with its error (whoever waits for it gets the error)."""
        if from_spool:
            assert self.spool is not None
            self._spool_call(self.spool.forget, [p.event_uuid for p in done])
        else:
            kept = self._keep(unconfirmed)
            self.buffer.extendleft(reversed([*again, *unconfirmed[kept:]]))
            self._trim()
        if parked:
            self._park(parked, from_spool)

    def _trim(self) -> None:
        """Keep the buffer within ``emit_buffer_size`` after a batch came back: while it was out,
        new events took its room. The newest of them move to the spool (without a spool, the buffer
        stays over its size by at most that one batch, and takes nothing new until it is under)."""
        if self.spool is None or len(self.buffer) <= self.settings.emit_buffer_size:
            return  # the common case, without the lock: only the flusher takes from the buffer
        with self._intake:
            excess = len(self.buffer) - self.settings.emit_buffer_size
            newest = [self.buffer.pop() for _ in range(excess)]
            newest.reverse()
            kept = self._keep(newest)
            self.buffer.extend(newest[kept:])

    def _keep(self, events: list[PendingEvent]) -> int:
        """Write stored but not yet durable events to the spool (they are stored again from
        there until their level holds); how many it took (the rest stay in memory)."""
        if not events or self.spool is None:
            return 0
        try:
            kept = self.spool.add(events)
        except (OSError, sqlite3.Error) as exc:
            logger.error("cannot write to the spool %s: %s", self.spool.path, exc)
            return 0
        for pending in events[:kept]:
            if pending.future is not None:
                self._spooled_futures[pending.event_uuid] = pending.future
        self.spool_waiting = self.spool_waiting or kept > 0
        return kept

    def _park(self, parked: list[tuple[PendingEvent, BaseException]], from_spool: bool) -> None:
        kept = False
        if self.spool is not None:
            kept = self._spool_call(self.spool.park, [(p, str(error)) for p, error in parked])
        if not kept:
            logger.error(
                "%d emitted events cannot be stored and there is no spool to keep them in (spool = false, or "
                "unwritable): %s",
                len(parked),
                ", ".join(p.event_uuid for p, _ in parked),
            )
        for pending, error in parked:
            future = self.future_of(pending)
            if future is not None and not future.done():
                future.set_exception(error)

    def _spool_call(self, call: Any, argument: Any) -> bool:
        assert self.spool is not None
        try:
            call(argument)
        except (OSError, sqlite3.Error) as exc:
            logger.error("cannot write to the spool %s: %s", self.spool.path, exc)
            return False
        return True

    # -- closing -------------------------------------------------------------------------------

    def spill_all(self, reason: str, redis_url: str) -> None:
        """On closing: keep what Redis did not take in the spool; what does not fit is lost (and logged)."""
        pending = [p for p in self.buffer if p.take()]
        self.buffer.clear()
        kept = 0
        if self.spool is not None and pending:
            try:
                kept = self.spool.add(pending)
            except (OSError, sqlite3.Error) as exc:
                logger.error("cannot write to the spool %s: %s", self.spool.path, exc)
        if kept and self.spool is not None:
            logger.warning(
                "%d emitted events were not stored (%s); they wait in the spool %s for the next emitter "
                "or `taskemit spool flush`",
                kept,
                reason,
                self.spool.path,
            )
        for event in pending[:kept]:
            if event.future is not None and not event.future.done():
                event.future.set_exception(RedisUnavailable(redis_url, f"{reason}; the event waits in the spool"))
        lost = pending[kept:]
        for event in lost:
            if event.future is not None and not event.future.done():
                event.future.set_exception(RedisUnavailable(redis_url, reason))
        if lost:
            logger.error("%d emitted events were not stored: %s", len(lost), reason)

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()
