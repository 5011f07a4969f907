"""Sweeps: how a relay takes the rows of its outbox table that nobody handed it, with the claim
strategy of the database (``claims.py``).

On PostgreSQL a sweep makes a few claims at once, each in a transaction of its own that holds
its rows locked (``SKIP LOCKED``) while they are stored in Redis, deletes the stored ones and
commits; rows stored after it committed are left to the relay's deleter. On every other database
a sweep claims rows with a lease, sends them, and leaves their deleting to the deleter. Either
way a row that does not decode is parked for an hour (reported, never fatal), and rows the relay
is sending or deleting already are not claimed again. The relay loop, the sending and the
deleting are the relay's (``relay.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from . import claims
from .database import Database

if TYPE_CHECKING:
    from sqlalchemy import Table

__all__ = ("Sweeps",)

T = TypeVar("T")

#: seconds a sweep on PostgreSQL waits for its rows to be stored before committing (the rest are
#: deleted when they are)
_STORE_WAIT = 5.0
#: seconds a row that does not decode is left alone before it is tried again
_PARK_FOR = 3600.0
#: claims a PostgreSQL sweep makes at once
_LOCKED_CLAIMS = 3


class Sweeps(Generic[T]):
    """A relay's sweeps of its table (``Relay`` has the state they read and write)."""

    database: Database
    table: Table
    batch: int
    claim_ttl: float
    min_age: float
    claims: str
    _decode: Callable[[str], T]
    _in_flight: dict[str, asyncio.Future[Any]]
    _to_delete: dict[str, None]
    _sweeping: set[str]
    _swept: set[str]
    _deletes: asyncio.Event

    if TYPE_CHECKING:

        def _send(self, events: Sequence[tuple[str, T]]) -> list[asyncio.Future[Any]]: ...
        def _error(self, message: str) -> None: ...

    async def _claim(self) -> bool:
        """Claim the table's free rows once and send them; True when it found a full batch of new
        ones (sweep again)."""
        now = int(time.time() * 1000)
        created_before = now - int(self.min_age * 1000)
        table = self.table
        if self.claims == claims.LEASE:
            busy = _Busy(self._in_flight, self._to_delete)
            rows = await self.database.run(
                claims.claim_leased, table, self.batch, now, created_before, int(self.claim_ttl * 1000), busy
            )
            fresh = self._decoded(rows)
            self._send(fresh)
            if len(fresh) < len(rows):
                await self._park(rows, fresh)
            return len(rows) >= self.batch and bool(fresh)
        # several claims at once, each in its own transaction: one waits for Redis while another
        # reads or deletes (SKIP LOCKED gives each different rows)
        sent = await asyncio.gather(*(self._sweep_locked(now, created_before) for _ in range(_LOCKED_CLAIMS)))
        return any(sent)

    async def _sweep_locked(self, now: int, created_before: int) -> bool:
        table = self.table
        claimed: list[str] = []
        try:
            async with self.database.transaction() as tx:
                rows = await tx.run(claims.claim_locked, table, self.batch, now, created_before)
                claimed = [event_uuid for event_uuid, _ in rows]
                self._sweeping.update(claimed)
                new = [pair for pair in rows if pair[0] not in self._in_flight]
                fresh = self._decoded(rows)
                futures = self._send(fresh)
                if futures and new:
                    await asyncio.wait(futures, timeout=_STORE_WAIT)
                stored = [u for u in claimed if u in self._swept or u in self._to_delete]
                if stored:
                    await tx.run(claims.delete_rows, table, stored)
                    self._swept.difference_update(stored)
                    for event_uuid in stored:
                        self._to_delete.pop(event_uuid, None)
                if len(fresh) < len(rows):
                    await tx.run(claims.park, table, self._undecodable(rows, fresh), now + int(_PARK_FOR * 1000))
        finally:  # rows stored after the transaction (or while it failed) are the deleter's
            self._sweeping.difference_update(claimed)
            late = [event_uuid for event_uuid in claimed if event_uuid in self._swept]
            if late:
                self._swept.difference_update(late)
                self._to_delete.update(dict.fromkeys(late))
                self._deletes.set()
        return len(rows) >= self.batch and bool(new)

    def _decoded(self, rows: Sequence[tuple[str, str]]) -> list[tuple[str, T]]:
        decoded = []
        for event_uuid, data in rows:
            try:
                decoded.append((event_uuid, self._decode(data)))
            except Exception as exc:  # a row nobody can send: left aside, reported, never fatal
                self._error(f"the outbox row of event {event_uuid} does not decode ({exc}); it is left for an hour")
        return decoded

    @staticmethod
    def _undecodable(rows: Sequence[tuple[str, str]], fresh: Sequence[tuple[str, T]]) -> list[str]:
        good = {event_uuid for event_uuid, _ in fresh}
        return [event_uuid for event_uuid, _ in rows if event_uuid not in good]

    async def _park(self, rows: Sequence[tuple[str, str]], fresh: Sequence[tuple[str, T]]) -> None:
        until = int((time.time() + _PARK_FOR) * 1000)
        await self.database.run(claims.park, self.table, self._undecodable(rows, fresh), until)


class _Busy:
    """The rows a relay is storing or deleting (read by its claims on the database's thread: a
    membership test on two dicts, no copy)."""

    __slots__ = ("_deleting", "_sending")

    def __init__(self, sending: dict[str, Any], deleting: dict[str, None]) -> None:
        self._sending = sending
        self._deleting = deleting

    def __contains__(self, event_uuid: object) -> bool:
        return event_uuid in self._sending or event_uuid in self._deleting
