"""Outbox relays' reports: which relays run, on which database, how far behind they are.

Every relay (in an emitter, or ``taskemit outbox relay``) writes a report every few seconds:
a hash that expires unless renewed, and a sorted set of relay ids by the time of the last
report (``KeySpace.outbox_relays``). ``taskemit check``, the metrics and the dashboard read
them here. The backlog is the rows waiting in the outbox table; the lag is the age of the
oldest of them, so a relay that keeps up shows a lag near zero.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from ..store.keys import KeySpace

__all__ = (
    "REPORT_INTERVAL",
    "RelayReport",
    "relay_reports",
    "remove_relay_report",
    "report_from_hash",
    "write_relay_report",
)

#: seconds between a relay's reports; a report three intervals old has expired
REPORT_INTERVAL = 5.0
_FORGET_AFTER = 3600.0


@dataclass(frozen=True, slots=True)
class RelayReport:
    """A relay's last report."""

    relay_id: str
    #: the database URL without its password, and the outbox table
    database: str
    table: str
    host: str
    pid: int
    #: "skip-locked" (PostgreSQL) or "lease" (other databases)
    claims: str
    started: float
    reported: float
    #: rows waiting in the table when it last looked, and the age in seconds of the oldest one
    backlog: int
    lag: float
    #: events it stored in Redis, and errors (database, Redis, undecodable rows) since it started
    relayed: int
    errors: int
    last_error: str = ""
    last_error_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def write_relay_report(redis: Any, space: KeySpace, report: RelayReport) -> None:
    """Record ``report``; it expires after three report intervals without a new one."""
    fields = {name: json.dumps(value) for name, value in report.to_dict().items()}
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(space.outbox_relay(report.relay_id), mapping=fields)
        pipe.expire(space.outbox_relay(report.relay_id), int(REPORT_INTERVAL * 3))
        pipe.zadd(space.outbox_relays, {report.relay_id: report.reported})
        pipe.zremrangebyscore(space.outbox_relays, "-inf", report.reported - _FORGET_AFTER)
        await pipe.execute()


async def remove_relay_report(redis: Any, space: KeySpace, relay_id: str) -> None:
    """Forget a relay that stopped cleanly."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(space.outbox_relay(relay_id))
        pipe.zrem(space.outbox_relays, relay_id)
        await pipe.execute()


async def relay_reports(redis: Any, *, space: KeySpace) -> list[RelayReport]:
    """The live relays' last reports, most recent first."""
    ids = [i.decode() for i in await redis.zrevrange(space.outbox_relays, 0, -1)]
    async with redis.pipeline(transaction=False) as pipe:
        for relay_id in ids:
            pipe.hgetall(space.outbox_relay(relay_id))
        replies = await pipe.execute()
    return [report_from_hash(relay_id, raw) for relay_id, raw in zip(ids, replies, strict=True) if raw]


def report_from_hash(relay_id: str, raw: dict[bytes, bytes]) -> RelayReport:
    """A report from its hash in Redis (for readers with a sync client: the metrics)."""
    data = {k.decode(): json.loads(v) for k, v in raw.items()}
    return RelayReport(
        relay_id=relay_id,
        database=str(data.get("database", "")),
        table=str(data.get("table", "")),
        host=str(data.get("host", "")),
        pid=int(data.get("pid", 0)),
        claims=str(data.get("claims", "")),
        started=float(data.get("started", 0.0)),
        reported=float(data.get("reported", time.time())),
        backlog=int(data.get("backlog", 0)),
        lag=float(data.get("lag", 0.0)),
        relayed=int(data.get("relayed", 0)),
        errors=int(data.get("errors", 0)),
        last_error=str(data.get("last_error", "")),
        last_error_at=float(data.get("last_error_at", 0.0)),
    )
