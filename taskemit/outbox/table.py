"""The outbox table: taskemit's SQLAlchemy model of the events waiting in the app's database.

One row per event: its uuid (the primary key, so an event is in the table once and inserting
it needs nothing back from the database), its event id (for people looking at the table), when
it was emitted (ms since the epoch: relays take the oldest first), the encoded event
(``emit/durable.py``'s JSON), and, on databases without ``SKIP LOCKED``, which relay claimed it
until when. ``outbox_table(metadata)`` adds the table to an app's own metadata (``create_all``,
Alembic's autogenerate); emits add rows through a class mapped on a private registry.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Column, Index, MetaData, String, Table, Text
from sqlalchemy.orm import registry

__all__ = ("COLUMNS", "DEFAULT_TABLE", "OutboxRow", "outbox_table", "row_class")

DEFAULT_TABLE = "taskemit_outbox"
#: the columns a relay needs (what the start-up check looks for)
COLUMNS = ("event_uuid", "event_id", "created_ms", "data", "claim", "claimed_until")


def outbox_table(metadata: MetaData | None = None, name: str = DEFAULT_TABLE) -> Table:
    """The outbox table named ``name`` in ``metadata`` (added to it unless it is there already).

    Give your app's metadata (``Base.metadata``) for ``create_all`` and Alembic to see it; the
    name must be the ``outbox_table`` setting's.
    """
    metadata = metadata if metadata is not None else MetaData()
    existing = metadata.tables.get(name)
    if existing is not None:
        return existing
    return Table(
        name,
        metadata,
        Column("event_uuid", String(36), primary_key=True, comment="the event's uuid: stored in Redis once by it"),
        Column("event_id", String(255), nullable=False, comment="the event id (or event class path)"),
        Column("created_ms", BigInteger, nullable=False, comment="emitted at, ms since the epoch"),
        Column("data", Text, nullable=False, comment="the encoded event: its jobs, their routes, its cause"),
        Column("claim", String(32), nullable=True, comment="the claim of the relay storing it (lease databases)"),
        Column("claimed_until", BigInteger, nullable=True, comment="when that claim runs out, ms since the epoch"),
        Index(f"ix_{name}_created_ms", "created_ms"),
    )


class OutboxRow:
    """An event added to a session's outbox table (one mapped subclass per table name)."""

    __table__: Table

    event_uuid: str
    event_id: str
    created_ms: int
    data: str

    def __init__(self, event_uuid: str, event_id: str, created_ms: int, data: str) -> None:
        self.event_uuid = event_uuid
        self.event_id = event_id
        self.created_ms = created_ms
        self.data = data

    def __repr__(self) -> str:
        return f"<outbox row {self.event_uuid} {self.event_id!r}>"


_registry = registry()
_classes: dict[str, type[OutboxRow]] = {}


def row_class(name: str = DEFAULT_TABLE) -> type[OutboxRow]:
    """The mapped class of the outbox table ``name`` (made once per name)."""
    cls = _classes.get(name)
    if cls is None:
        attributes: dict[str, Any] = {"__module__": __name__, "__doc__": OutboxRow.__doc__}
        cls = type(f"OutboxRow_{name}", (OutboxRow,), attributes)
        _registry.map_imperatively(cls, outbox_table(_registry.metadata, name))
        _classes[name] = cls
    return cls
