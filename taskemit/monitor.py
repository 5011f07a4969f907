"""Reading what happened to an emitted event: its record and each listener job's outcome."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from . import keys

__all__ = ("EventRecord", "JobOutcome", "event_record", "events_between")


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """One listener job of an event; ``status`` is ``pending`` until a worker finishes it."""

    listener: str
    job_id: str
    status: str
    started: float | None = None
    finished: float | None = None
    job_try: int | None = None
    worker: str | None = None
    error: dict[str, Any] | None = None
    result: str | None = None

    @property
    def duration(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started

    @property
    def done(self) -> bool:
        return self.status != "pending"


@dataclass(frozen=True, slots=True)
class EventRecord:
    """An emitted event as stored in Redis."""

    event_uuid: str
    event_id: str
    emitted_at: float
    jobs: list[JobOutcome] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return all(job.done for job in self.jobs)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def event_record(redis: Any, event_uuid: str) -> EventRecord | None:
    """The record of ``event_uuid``, or None if it never existed or has expired."""
    raw = await redis.hgetall(keys.event_key(event_uuid))
    if not raw:
        return None
    fields = {_text(k): _text(v) for k, v in raw.items()}
    jobs = []
    for listener_name, job_id in json.loads(fields["jobs"]).items():
        outcome = json.loads(fields.get("job:" + job_id, "null")) or {}
        jobs.append(
            JobOutcome(
                listener=listener_name,
                job_id=job_id,
                status=outcome.get("status", "pending"),
                started=outcome.get("started"),
                finished=outcome.get("finished"),
                job_try=outcome.get("job_try"),
                worker=outcome.get("worker"),
                error=outcome.get("error"),
                result=outcome.get("result"),
            )
        )
    return EventRecord(event_uuid, fields["event"], int(fields["emitted_at"]) / 1000, jobs)


async def events_between(redis: Any, start: float, end: float, limit: int = 1000) -> list[str]:
    """Uuids of events emitted between ``start`` and ``end`` (epoch seconds), oldest first."""
    members = await redis.zrangebyscore(keys.EVENTS_INDEX, int(start * 1000), int(end * 1000), start=0, num=limit)
    return [_text(member) for member in members]
