"""Events staged in a SQLAlchemy session's transaction, handed on when it commits.

``stage(session, sink, item, row)`` adds ``row`` (an outbox row, or None for an after-commit
emit) to the session and remembers ``item`` for ``sink``. When the session's outermost
transaction commits, each sink gets its items (for rows: those the commit kept); a rollback
drops them, a savepoint's rollback the items staged inside it. The session events are
listened to once, on the ``Session`` class (an ``AsyncSession`` runs a ``Session`` inside),
so staging costs a dictionary look-up and a list append; nothing here does I/O.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

__all__ = ("Sink", "stage", "sync_session")

logger = logging.getLogger("taskemit.outbox")

#: called once per commit with the items staged for it (on the committing thread)
Sink = Callable[[list[Any]], None]

_KEY = "taskemit.staged"
_listening = False
_lock = threading.Lock()


class _Staged:
    __slots__ = ("item", "row", "sink", "transaction")

    def __init__(self, sink: Sink, item: Any, row: object | None, transaction: SessionTransaction) -> None:
        self.sink = sink
        self.item = item
        self.row = row
        self.transaction = transaction


def sync_session(session: Any) -> Session:
    """The ORM ``Session`` of ``session`` (an ``AsyncSession``'s ``sync_session``); TypeError for anything else."""
    if isinstance(session, Session):
        return session
    if isinstance(session, AsyncSession):
        return session.sync_session
    raise TypeError(
        f"session= takes a SQLAlchemy Session or AsyncSession (the one the app writes its rows with), got {session!r}"
    )


def stage(session: Session, sink: Sink, item: Any, row: object | None) -> None:
    """Add ``row`` (if any) to ``session`` and give ``item`` to ``sink`` when the transaction commits."""
    if not _listening:
        _listen()
    if row is not None:
        session.add(row)
    # the innermost transaction: a savepoint's rollback drops what was staged inside it
    transaction = session.get_nested_transaction() or session.get_transaction()
    if transaction is None:
        transaction = session.begin()  # no I/O: the connection is taken when a statement runs
    staged = session.info.get(_KEY)
    if staged is None:
        staged = session.info[_KEY] = []
    staged.append(_Staged(sink, item, row, transaction))


def _listen() -> None:
    global _listening
    with _lock:
        if not _listening:
            event.listen(Session, "after_commit", _after_commit)
            event.listen(Session, "after_soft_rollback", _after_soft_rollback)
            event.listen(Session, "after_transaction_end", _after_transaction_end)
            _listening = True


def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint released: its items now belong to the transaction around it
        return
    staged = session.info.pop(_KEY, None)
    if not staged:
        return
    by_sink: dict[int, tuple[Sink, list[Any]]] = {}
    for entry in staged:
        if entry.row is not None and not sa_inspect(entry.row).persistent:
            continue  # not in the database: its savepoint was rolled back
        by_sink.setdefault(id(entry.sink), (entry.sink, []))[1].append(entry.item)
    for sink, items in by_sink.values():
        try:
            sink(items)
        except Exception:  # the commit has happened: never fail it afterwards
            logger.exception("handing %d committed events on failed", len(items))


def _after_soft_rollback(session: Session, previous_transaction: SessionTransaction) -> None:
    staged: list[_Staged] | None = session.info.get(_KEY)
    if not staged:
        return
    if previous_transaction.parent is None:
        del session.info[_KEY]
        return
    session.info[_KEY] = [entry for entry in staged if not _inside(entry.transaction, previous_transaction)]


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # committed (handed on already), rolled back or closed: nothing is left
        session.info.pop(_KEY, None)


def _inside(transaction: SessionTransaction | None, outer: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is outer:
            return True
        transaction = transaction.parent
    return False
