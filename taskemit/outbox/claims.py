"""How relays share an outbox table: which rows each one takes, so that several can run at once.

- **skip-locked** (PostgreSQL): a relay selects the oldest rows ``FOR UPDATE SKIP LOCKED`` in a
  transaction that stays open while it stores them in Redis, deletes them in the same
  transaction and commits. Another relay skips the locked rows and takes the next ones; a relay
  that dies rolls back, and its rows are free again at once.
- **lease** (SQLite and every other database): a relay claims rows with one conditional
  ``UPDATE`` (its claim token and a lease end, only on rows nobody holds or whose lease ran
  out, ``outbox_claim_ttl``), commits, reads back the rows its token got, stores them and
  deletes them. The ``UPDATE`` is the compare-and-set: two relays never hold one row at once;
  the rows of a relay that died are taken again when its lease runs out.

Either way a row can be stored twice (a relay that died after storing and before deleting; a
lease that ran out while its relay was still storing): every stored row is an exactly-once emit
by its event uuid, so the second store stores nothing. The functions take a sync
``Connection`` (``Database`` runs them) and return plain tuples.
"""

from __future__ import annotations

import uuid
from collections.abc import Container, Sequence

from sqlalchemy import ColumnElement, Connection, Table, and_, delete, func, or_, select, update

__all__ = ("LEASE", "SKIP_LOCKED", "claim_leased", "claim_locked", "count", "delete_rows", "park", "strategy")

SKIP_LOCKED = "skip-locked"
LEASE = "lease"
#: rows per DELETE statement (bound parameters per statement stay far below every database's limit)
_CHUNK = 500


def strategy(dialect: str) -> str:
    """The claim strategy for a SQLAlchemy dialect name."""
    return SKIP_LOCKED if dialect == "postgresql" else LEASE


def _claimable(table: Table, now_ms: int, created_before: int) -> list[ColumnElement[bool]]:
    return [
        table.c.created_ms <= created_before,
        or_(table.c.claimed_until.is_(None), table.c.claimed_until < now_ms),
    ]


def claim_locked(
    connection: Connection, table: Table, limit: int, now_ms: int, created_before: int
) -> list[tuple[str, str]]:
    """The oldest free rows, locked for this transaction (PostgreSQL): (uuid, data) each."""
    query = (
        select(table.c.event_uuid, table.c.data)
        .where(*_claimable(table, now_ms, created_before))
        .order_by(table.c.created_ms)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [(row[0], row[1]) for row in connection.execute(query)]


def claim_leased(
    connection: Connection,
    table: Table,
    limit: int,
    now_ms: int,
    created_before: int,
    lease_ms: int,
    skip: Container[str] = (),
) -> list[tuple[str, str]]:
    """Claim the oldest free rows until ``now_ms + lease_ms`` (commit before storing them): (uuid, data)
    each. ``skip``: rows the caller is storing or deleting already (no write for them: on SQLite each
    claim is a commit)."""
    candidates = [
        row[0]
        for row in connection.execute(
            select(table.c.event_uuid)
            .where(*_claimable(table, now_ms, created_before))
            .order_by(table.c.created_ms)
            .limit(limit)
        )
        if row[0] not in skip
    ]
    if not candidates:
        return []
    token = uuid.uuid4().hex
    connection.execute(
        update(table)
        .where(
            and_(
                table.c.event_uuid.in_(candidates),
                or_(table.c.claimed_until.is_(None), table.c.claimed_until < now_ms),
            )
        )
        .values(claim=token, claimed_until=now_ms + lease_ms)
    )
    taken = connection.execute(select(table.c.event_uuid, table.c.data).where(table.c.claim == token))
    return [(row[0], row[1]) for row in taken]


def delete_rows(connection: Connection, table: Table, event_uuids: Sequence[str], skip_locked: bool = False) -> int:
    """Delete the rows of events stored in Redis; ``skip_locked``: leave rows another relay holds
    (it stores them again, which stores nothing, and deletes them)."""
    deleted = 0
    for first in range(0, len(event_uuids), _CHUNK):
        chunk = list(event_uuids[first : first + _CHUNK])
        where = table.c.event_uuid.in_(chunk)
        if skip_locked:
            free = select(table.c.event_uuid).where(where).with_for_update(skip_locked=True)
            where = table.c.event_uuid.in_(free)
        deleted += connection.execute(delete(table).where(where)).rowcount or 0
    return deleted


def park(connection: Connection, table: Table, event_uuids: Sequence[str], until_ms: int) -> None:
    """Leave rows alone until ``until_ms`` (rows that do not decode: an operator looks at them)."""
    connection.execute(
        update(table).where(table.c.event_uuid.in_(list(event_uuids))).values(claim="parked", claimed_until=until_ms)
    )


def count(connection: Connection, table: Table) -> tuple[int, int | None]:
    """Rows waiting, and the emit time (ms) of the oldest one (None when there is none)."""
    row = connection.execute(select(func.count(), func.min(table.c.created_ms)).select_from(table)).one()
    return int(row[0]), None if row[1] is None else int(row[1])
