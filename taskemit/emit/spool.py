"""The spool: emitted events that Redis did not take, kept on local disk until it does.

An emitter writes events here when Redis is unreachable and its in-memory buffer is full, and
when it closes with events still buffered (a deploy during an outage). The next emitter of the
same namespace that starts with the same ``spool_dir``, or ``taskemit spool flush``, stores
them. They are stored once each, by event uuid, however often the spool is replayed: Redis stores
nothing for an event whose record it has, so a second replay (two processes, or a crash between
storing and forgetting) is a no-op. (The encoding of an event is ``durable.py``'s, the
outbox's too.) Events stored whose durability level did not hold yet are
kept here too, and stored again until it does; events whose reply proved them bad are parked
apart, with the error, until ``taskemit spool flush --parked``.

One SQLite file per namespace (``<spool_dir>/<namespace>.sqlite3``), written with SQLite's
write-ahead log, so an event is on disk when ``emit`` returns.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

from ..settings import Settings
from .durable import DurableDecoder, encode_pending
from .writer import PendingEvent

__all__ = ("Spool", "default_spool_dir")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_uuid TEXT NOT NULL UNIQUE,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS parked (
    event_uuid TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    error TEXT NOT NULL,
    parked_at REAL NOT NULL
)
"""


def default_spool_dir() -> Path:
    """``$XDG_STATE_HOME/taskemit/spool``, else ``~/.local/state/taskemit/spool``."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "taskemit" / "spool"


class Spool:
    """The spool file of one namespace. Thread-safe: ``emit`` may spill from any thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        directory = Path(settings.spool_dir) if settings.spool_dir else default_spool_dir()
        self.path = directory / f"{settings.namespace}.sqlite3"
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    def exists(self) -> bool:
        return self.path.exists()

    def count(self) -> int:
        with self._lock:
            (count,) = self._connect().execute("SELECT COUNT(*) FROM events").fetchone()
        return int(count)

    def add(self, events: list[PendingEvent]) -> int:
        """Write ``events``, up to ``spool_size`` in the file; returns how many were written."""
        if not events:
            return 0
        with self._lock:
            db = self._connect()
            (count,) = db.execute("SELECT COUNT(*) FROM events").fetchone()
            room = max(0, self.settings.spool_size - int(count))
            taken = events[:room]
            if taken:
                db.execute("BEGIN IMMEDIATE")
                try:
                    db.executemany(
                        "INSERT OR IGNORE INTO events (event_uuid, data) VALUES (?, ?)",
                        [(p.event_uuid, encode_pending(p)) for p in taken],
                    )
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
        return len(taken)

    def read(self, limit: int) -> list[PendingEvent]:
        """The oldest ``limit`` spooled events (they stay in the file until ``forget``)."""
        with self._lock:
            rows = self._connect().execute("SELECT data FROM events ORDER BY seq LIMIT ?", (limit,)).fetchall()
        decoder = DurableDecoder(self.settings)
        return [decoder.decode(data) for (data,) in rows]

    def forget(self, event_uuids: list[str]) -> None:
        """Remove events that are stored in Redis now."""
        if not event_uuids:
            return
        with self._lock:
            db = self._connect()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("DELETE FROM events WHERE event_uuid = ?", [(uuid,) for uuid in event_uuids])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def park(self, events: list[tuple[PendingEvent, str]]) -> None:
        """Keep ``events`` aside, each with the error that proved it bad: they are not stored
        again until ``unpark`` (``taskemit spool flush --parked``), after the cause is fixed."""
        if not events:
            return
        now = time.time()
        with self._lock:
            db = self._connect()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT OR REPLACE INTO parked (event_uuid, data, error, parked_at) VALUES (?, ?, ?, ?)",
                    [(p.event_uuid, encode_pending(p), error, now) for p, error in events],
                )
                db.executemany("DELETE FROM events WHERE event_uuid = ?", [(p.event_uuid,) for p, _ in events])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def parked(self) -> list[tuple[str, str, float]]:
        """The parked events: (event uuid, error, when parked), oldest first."""
        with self._lock:
            rows = self._connect().execute("SELECT event_uuid, error, parked_at FROM parked ORDER BY parked_at")
            return [(str(uuid), str(error), float(at)) for uuid, error, at in rows.fetchall()]

    def unpark(self) -> int:
        """Put the parked events back in line to be stored; how many."""
        with self._lock:
            db = self._connect()
            db.execute("BEGIN IMMEDIATE")
            try:
                moved = db.execute(
                    "INSERT OR IGNORE INTO events (event_uuid, data) SELECT event_uuid, data FROM parked "
                    "ORDER BY parked_at"
                ).rowcount
                db.execute("DELETE FROM parked")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return int(moved)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
