"""An emitter's events in the app's database transactions: the emitter's side of the outbox.

``emit(..., session=session)`` hands the prepared event here. With the outbox (the default) it
becomes a row of the outbox table in the session's transaction, and, once the transaction
commits, this emitter's relay for that database sends it at once and deletes the row when
Redis has it. With ``outbox=False`` it is kept in the session and submitted like a plain emit
when the transaction commits (nothing survives a crash between the commit and the store).
A rollback drops either. This module imports SQLAlchemy (``taskemit.outbox``), so the emitter
imports it only when a session or an outbox is given.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import TaskEmitError
from ..monitor.outbox import RelayReport, remove_relay_report, write_relay_report
from ..outbox.database import Database
from ..outbox.relay import Relay
from ..outbox.table import row_class
from ..outbox.transaction import Sink, stage, sync_session
from ..settings import Settings
from .durable import DurableDecoder, encode_pending
from .receipt import EmitReceipt
from .writer import PendingEvent

__all__ = ("Transactions",)

logger = logging.getLogger("taskemit.emitter")

#: seconds an in-process relay's sweeps leave rows alone: their own process's commit hands them on faster
IN_PROCESS_MIN_AGE = 1.0


def _left_for_the_relay_process(events: list[Any]) -> None:
    """The sink of rows when the outbox_relay setting is off: they wait for `taskemit outbox relay`."""


class Transactions:
    """One emitter's staged events and its relays, one per database (created with the emitter)."""

    __slots__ = ("_closed", "_decoder", "_lock", "_redis", "_relays", "_rows", "_submit", "settings")

    def __init__(self, settings: Settings, submit: Callable[[PendingEvent], None], redis: Callable[[], Any]) -> None:
        """``submit``: the emitter's own (buffer, flusher); ``redis``: its client, for the reports."""
        self.settings = settings
        self._submit = submit
        self._redis = redis
        self._rows = row_class(settings.outbox_table)
        self._decoder = DurableDecoder(settings)
        #: id of a sync engine -> (the engine, its relay, the sink of its committed rows)
        self._relays: dict[int, tuple[Any, Relay[PendingEvent], Sink]] = {}
        self._lock = threading.Lock()
        #: the emitter is closing: rows emitted now wait in their table for the next relay
        self._closed = False

    # -- staging (on any thread, no I/O) ----------------------------------------------------------

    def stage(self, pending: PendingEvent, session: Any, outbox: bool, loop: asyncio.AbstractEventLoop) -> None:
        """Keep ``pending`` in ``session``'s transaction (see the module)."""
        sync = sync_session(session)
        if not outbox:
            stage(sync, self._after_commit, pending, None)
            return
        row = self._rows(pending.event_uuid, pending.event_id, pending.emitted_ms, encode_pending(pending))
        sink: Sink = _left_for_the_relay_process
        if self.settings.outbox_relay and not self._closed:
            sink = self._relay_of(sync.get_bind(self._rows), loop)[2]
        stage(sync, sink, pending, row)

    def _after_commit(self, events: list[PendingEvent]) -> None:
        for pending in events:
            try:
                self._submit(pending)
            except TaskEmitError as exc:  # the commit is done: the event can only be logged as lost
                logger.error("event %s (%s) committed but not stored: %s", pending.event_uuid, pending.event_id, exc)

    def _relay_of(self, bind: Any, loop: asyncio.AbstractEventLoop) -> tuple[Any, Relay[PendingEvent], Sink]:
        engine = getattr(bind, "engine", bind)  # a session bound to a Connection
        found = self._relays.get(id(engine))
        if found is not None:
            return found
        with self._lock:
            found = self._relays.get(id(engine))
            if found is None:
                relay = self._relay(Database(engine), IN_PROCESS_MIN_AGE)
                found = self._relays[id(engine)] = (engine, relay, self._sink(relay))
                loop.call_soon_threadsafe(relay.begin)  # the table is checked by its sweeps
        return found

    @staticmethod
    def _sink(relay: Relay[PendingEvent]) -> Sink:
        def committed(events: list[PendingEvent]) -> None:
            relay.committed([(pending.event_uuid, pending) for pending in events])

        return committed

    # -- relays (on the emitter's loop) ------------------------------------------------------------

    def _relay(self, database: Database, min_age: float) -> Relay[PendingEvent]:
        settings = self.settings
        return Relay(
            database,
            settings.outbox_table,
            submit=self._send,
            decode=self._decoder.decode,
            batch=settings.outbox_batch,
            poll=settings.outbox_poll,
            claim_ttl=settings.outbox_claim_ttl,
            min_age=min_age,
            report=self._write_report,
        )

    async def start(self, binds: Iterable[Any], *, in_process: bool = True) -> list[Relay[PendingEvent]]:
        """Relay the outbox of each engine in ``binds`` from now on; OutboxTableMissing first if a
        table is not there. ``in_process=False``: a relay process's (it takes even the newest rows)."""
        started = []
        for bind in binds:
            database = Database(bind)
            if id(database.engine) in self._relays:
                started.append(self._relays[id(database.engine)][1])
                continue
            relay = self._relay(database, IN_PROCESS_MIN_AGE if in_process else 0.0)
            await relay.start(check_table=True)
            self._relays[id(database.engine)] = (database.engine, relay, self._sink(relay))
            started.append(relay)
        return started

    async def close(self, timeout: float) -> None:
        """Stop every relay, waiting up to ``timeout`` seconds for what they sent to be stored."""
        self._closed = True
        relays = [relay for _, relay, _ in self._relays.values()]
        self._relays.clear()
        await asyncio.gather(*(relay.stop(timeout) for relay in relays))
        for relay in relays:
            # the engine is the app's and stays usable; its pool may have been disposed already by the
            # app (a Litestar lifespan ends before the emitter's): close what the relay opened since
            await relay.database.dispose()
            try:
                async with asyncio.timeout(self.settings.publish_timeout):
                    await remove_relay_report(self._redis(), self.settings.keys, relay.relay_id)
            except Exception as exc:  # Redis away: the report expires by itself
                logger.debug("removing the outbox relay report failed: %s", exc)

    def relays(self) -> list[Relay[PendingEvent]]:
        return [relay for _, relay, _ in self._relays.values()]

    def _send(self, events: list[PendingEvent]) -> list[asyncio.Future[Any]]:
        """The relay's submit: into the emitter's buffer, one future per event (done when stored)."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Any]] = []
        for pending in events:
            done: asyncio.Future[EmitReceipt | None] = loop.create_future()  # the flusher resolves it on this loop
            pending.future = done
            try:
                self._submit(pending)
            except TaskEmitError as exc:  # the buffer and the spool are full: the row waits in its table
                done.set_exception(exc)
            futures.append(done)
        return futures

    async def _write_report(self, report: RelayReport) -> None:
        async with asyncio.timeout(self.settings.publish_timeout):
            await write_relay_report(self._redis(), self.settings.keys, report)
