"""``Relay``: takes the committed rows of one database's outbox table to Redis, and deletes them.

Rows come two ways. The rows a process committed itself are handed to its relay by the
session's ``after_commit`` (``committed``), already decoded: the relay sends them at once, so
an event reaches its workers about as fast as a direct emit. Sweeps take every other row from
the table (rows of other processes, rows left by a crash or an outage) with the claim strategy
of the database (``sweeps.py``, ``claims.py``): at start, whenever a sweep came back full, and
every ``poll`` seconds.

Sending is the caller's ``submit``: given events, it returns one future per event that
completes when Redis has it (an emitter's buffer and flusher: the normal store path, each
event an exactly-once emit by its uuid). A stored event's row is deleted by a task of its own,
in batches. What is sent and not stored yet stays in the table, so nothing depends on this
process living: another relay, or this one restarted, sends it again, and the second send
stores nothing. The relay reports its backlog, lag and errors to Redis every few seconds
(``monitor/outbox.py``).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from ..monitor.outbox import REPORT_INTERVAL, RelayReport
from ..store.connection import raise_if_cancelled
from . import claims
from .database import Database
from .sweeps import Sweeps
from .table import outbox_table

__all__ = ("Relay",)

logger = logging.getLogger("taskemit.outbox")

T = TypeVar("T")

#: events a relay has sent and not seen stored, at most (past it, committed rows wait for a sweep)
MAX_IN_FLIGHT = 5000
#: seconds the deleter waits for more stored rows before deleting fewer than a batch (the rows wait
#: in the table a little longer; events are not delayed)
_DELETE_AFTER = 0.5
_BACKOFF_FIRST = 0.1
_BACKOFF_MAX = 5.0
_DATABASE_ERRORS = (SQLAlchemyError, OSError)


class Relay(Sweeps[T]):
    """Relays the outbox table ``table`` of ``database`` through ``submit`` (see the module)."""

    def __init__(
        self,
        database: Database,
        table: str,
        *,
        submit: Callable[[list[T]], list[asyncio.Future[Any]]],
        decode: Callable[[str], T],
        batch: int = 500,
        poll: float = 1.0,
        claim_ttl: float = 30.0,
        min_age: float = 0.0,
        report: Callable[[RelayReport], Awaitable[None]] | None = None,
    ) -> None:
        """``min_age``: sweeps leave rows younger than this many seconds (the in-process relay's
        own commits reach it faster through ``committed``)."""
        self.database = database
        self.table = outbox_table(name=table)
        self.batch = batch
        self.poll = poll
        self.claim_ttl = claim_ttl
        self.min_age = min_age
        self.claims = claims.strategy(database.dialect)
        self._submit = submit
        self._decode = decode
        self._report = report
        self.relay_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        #: rows this process committed, not sent yet: (uuid, event)
        self._committed: collections.deque[tuple[str, T]] = collections.deque()
        self._in_flight: dict[str, asyncio.Future[Any]] = {}
        #: stored rows to delete (a dict: ordered, and looked up by sweeps, which leave them alone)
        self._to_delete: dict[str, None] = {}
        #: rows an open SKIP LOCKED sweep holds (it deletes them itself), and those of them now stored
        self._sweeping: set[str] = set()
        self._swept: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._wake = asyncio.Event()
        self._sweep_soon = asyncio.Event()
        self._deletes = asyncio.Event()
        self._room = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.started = time.time()
        #: events stored, errors, the last one; the table's backlog and oldest row at the last look
        self.relayed = 0
        self.errors = 0
        self.last_error = ""
        self.last_error_at = 0.0
        self.backlog = 0
        self.oldest_ms: int | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return bool(self._tasks) and not self._stopping

    async def start(self, *, check_table: bool = True) -> None:
        """Start relaying; with ``check_table``, first raise OutboxTableMissing if the table is not there."""
        if check_table:
            await self.database.check_table(self.table.name)
        self.begin()

    def begin(self) -> None:
        """Start relaying without waiting (on the running loop); a missing table is then an error
        the relay logs and reports, and retries."""
        if self._tasks:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stopping = False
        self._tasks = [
            self._loop.create_task(self._run(), name="taskemit-outbox-relay"),
            self._loop.create_task(self._sweep_forever(), name="taskemit-outbox-sweeps"),
            self._loop.create_task(self._delete_forever(), name="taskemit-outbox-deletes"),
        ]
        if self._report is not None:
            self._tasks.append(self._loop.create_task(self._report_forever(), name="taskemit-outbox-reports"))
        if self._committed:  # handed on before the loop was known
            self._wake.set()

    async def stop(self, timeout: float) -> None:
        """Stop taking rows; wait up to ``timeout`` seconds for what was sent to be stored and its
        rows deleted (what is not stays in the table for the next relay)."""
        if not self._tasks:
            return
        self._stopping = True
        self._wake.set()
        self._sweep_soon.set()
        run, sweeps, deleter, *others = self._tasks
        deadline = time.monotonic() + timeout
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.gather(run, sweeps)), timeout)
        except TimeoutError:
            run.cancel()
            sweeps.cancel()
        if self._in_flight:
            await asyncio.wait(list(self._in_flight.values()), timeout=max(0.0, deadline - time.monotonic()))
        self._deletes.set()
        left = max(0.1, deadline - time.monotonic())
        try:
            await asyncio.wait_for(self._flush_deletes(), left)
        except (TimeoutError, *_DATABASE_ERRORS) as exc:
            left_over = len(self._to_delete)
            logger.warning(
                "stopping the outbox relay of %s: %d stored rows not deleted (%s)", self.where, left_over, exc
            )
        for task in (run, sweeps, deleter, *others):
            task.cancel()
        await asyncio.gather(run, sweeps, deleter, *others, return_exceptions=True)
        self._tasks = []
        await self.database.close()

    @property
    def where(self) -> str:
        return f"{self.database.url} (table {self.table.name})"

    # -- rows committed by this process ----------------------------------------------------------

    def committed(self, events: Sequence[tuple[str, T]]) -> None:
        """Rows this process just committed, as (uuid, event); may be called from any thread."""
        self._committed.extend(events)
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    # -- the loop --------------------------------------------------------------------------------

    async def _run(self) -> None:
        """Send what this process commits as it commits (apart from the sweeps, which may wait for
        the database)."""
        while not self._stopping:
            raise_if_cancelled()
            await self._wake.wait()
            self._wake.clear()
            while self._committed and not self._stopping:
                taken = [self._committed.popleft() for _ in range(min(self.batch, len(self._committed)))]
                if len(self._in_flight) >= MAX_IN_FLIGHT:  # they are in the table: a sweep takes them
                    self._committed.clear()
                    self._sweep_soon.set()
                    break
                self._send(taken)

    async def _sweep_forever(self) -> None:
        """Sweep the table at start, again at once after a full sweep, else every ``poll`` seconds."""
        sweep = True
        backoff = _BACKOFF_FIRST
        while not self._stopping:
            raise_if_cancelled()
            if not sweep:
                try:
                    async with asyncio.timeout(self.poll):
                        await self._sweep_soon.wait()
                except TimeoutError:
                    pass
                if self._stopping:
                    return
            self._sweep_soon.clear()
            try:
                sweep = await self._sweep()
                backoff = _BACKOFF_FIRST
            except _DATABASE_ERRORS as exc:
                self._error(f"reading the outbox failed: {exc}")
                sweep = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)

    def _send(self, events: Sequence[tuple[str, T]]) -> list[asyncio.Future[Any]]:
        """Send the events not in flight already; the futures of all of them."""
        fresh = [
            (event_uuid, event)
            for event_uuid, event in events
            if event_uuid not in self._in_flight and event_uuid not in self._to_delete  # stored already
        ]
        if fresh:
            for (event_uuid, _), future in zip(fresh, self._submit([event for _, event in fresh]), strict=True):
                self._in_flight[event_uuid] = future
                future.add_done_callback(partial(self._done, event_uuid))
        return [self._in_flight[event_uuid] for event_uuid, _ in events if event_uuid in self._in_flight]

    def _done(self, event_uuid: str, future: asyncio.Future[Any]) -> None:
        self._in_flight.pop(event_uuid, None)
        if len(self._in_flight) < MAX_IN_FLIGHT:
            self._room.set()
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            self._error(f"storing event {event_uuid} failed: {exc}")
            return
        self.relayed += 1
        if event_uuid in self._sweeping:
            self._swept.add(event_uuid)
            return
        self._to_delete[event_uuid] = None
        self._deletes.set()

    def _error(self, message: str) -> None:
        self.errors += 1
        self.last_error, self.last_error_at = message, time.time()
        logger.warning("outbox relay of %s: %s", self.where, message)

    async def _sweep(self) -> bool:
        """Take the table's free rows once; True when it found a full batch of new ones (sweep again)."""
        while len(self._in_flight) >= MAX_IN_FLIGHT and not self._stopping:
            self._room.clear()
            await self._room.wait()
        return await self._claim()

    # -- deleting stored rows ---------------------------------------------------------------------

    async def _delete_forever(self) -> None:
        backoff = _BACKOFF_FIRST
        while True:
            raise_if_cancelled()
            await self._deletes.wait()
            if not self._stopping and len(self._to_delete) < self.batch:
                await asyncio.sleep(_DELETE_AFTER)  # gather more: a commit each time is most of a delete's cost
            self._deletes.clear()
            try:
                await self._flush_deletes()
                backoff = _BACKOFF_FIRST
            except _DATABASE_ERRORS as exc:
                self._error(f"deleting stored rows failed: {exc}")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
                self._deletes.set()

    async def _flush_deletes(self) -> None:
        skip_locked = self.claims == claims.SKIP_LOCKED
        while self._to_delete:
            chunk = list(itertools.islice(self._to_delete, self.batch * 2))
            try:
                await self.database.run(claims.delete_rows, self.table, chunk, skip_locked)
            finally:
                # deleted, or (an error) left in the table: its next sweep sends it again, which stores nothing
                for event_uuid in chunk:
                    self._to_delete.pop(event_uuid, None)

    # -- reports ---------------------------------------------------------------------------------

    async def look(self) -> None:
        """Count the table's rows and find the oldest (the backlog and the lag of the reports)."""
        self.backlog, self.oldest_ms = await self.database.run(claims.count, self.table)

    def report(self) -> RelayReport:
        now = time.time()
        return RelayReport(
            relay_id=self.relay_id,
            database=self.database.url,
            table=self.table.name,
            host=socket.gethostname(),
            pid=os.getpid(),
            claims=self.claims,
            started=self.started,
            reported=now,
            backlog=self.backlog,
            lag=0.0 if self.oldest_ms is None else max(0.0, now - self.oldest_ms / 1000),
            relayed=self.relayed,
            errors=self.errors,
            last_error=self.last_error,
            last_error_at=self.last_error_at,
        )

    async def _report_forever(self) -> None:
        assert self._report is not None
        while True:
            raise_if_cancelled()
            try:
                await self.look()
            except _DATABASE_ERRORS as exc:
                self._error(f"counting the outbox rows failed: {exc}")
            try:
                await self._report(self.report())
            except Exception as exc:  # Redis away: the next report says it all
                logger.debug("writing the outbox relay report failed: %s", exc)
            await asyncio.sleep(REPORT_INTERVAL)
