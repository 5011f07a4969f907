"""The transactional outbox: events that wait in the app's own database until a relay stores them.

``emitter.emit(..., session=session)`` adds the event, checked and encoded, as a row of the
outbox table in the session's transaction (``transaction``): the commit keeps it with the rows
it describes, a rollback drops it. Relays (``relay``) take the committed rows (``claims``:
``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, leases on other databases), hand them to
an emitter to store in Redis, once each by event uuid, and delete them. ``table`` is the
table's SQLAlchemy model, ``database`` runs the relay's statements on a sync or async engine.

This package needs SQLAlchemy (``pip install 'taskemit[sqlalchemy]'``); nothing imports it
until a session is emitted into or a relay starts.
"""

from __future__ import annotations

from .table import DEFAULT_TABLE, outbox_table

__all__ = ("DEFAULT_TABLE", "outbox_table")
