"""What happened to an event and to each listener job: statuses, lookups, listings, waiting.

Everything here reads indexed structures: an event is one hash plus one pipelined round
trip over its jobs (O(listeners)); listings walk sorted sets page by page with a cursor,
never ``KEYS`` or ``SCAN``.

Job statuses: ``queued`` (waiting to run), ``deferred`` (scheduled for later),
``in_progress``, ``retrying`` (waiting for attempt n > 1), ``complete``, ``failed``
(dead-lettered), ``aborted``, ``unknown`` (no trace left, or never existed).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import ListenerError, WaitTimeout
from ..settings import Settings
from ..state import FINISHED_STATES, JobState
from ..store.arq_format import decode_result
from ..store.codec import META_KWARG, get_codec
from ..store.connection import raise_if_cancelled
from ..store.keys import KeySpace
from ..store.wire import as_text
from .workers import live_workers

__all__ = (
    "DONE_STATUSES",
    "EventStatus",
    "JobStatus",
    "event_status",
    "event_statuses",
    "job_attempts",
    "job_status",
    "wait_for_event",
)

DONE_STATUSES = FINISHED_STATES
#: how an event's status follows from its jobs' (first match wins)
_EVENT_PRECEDENCE = (
    JobState.FAILED,
    JobState.ABORTED,
    JobState.IN_PROGRESS,
    JobState.RETRYING,
    JobState.QUEUED,
    JobState.DEFERRED,
    JobState.UNKNOWN,
    JobState.COMPLETE,
)


#: states in which a job waits for a worker to take it
_WAITING_STATES = frozenset({JobState.QUEUED, JobState.DEFERRED, JobState.RETRYING})


@dataclass(frozen=True, slots=True)
class JobStatus:
    """One listener job of an event, as far as Redis knows."""

    job_id: str
    listener: str
    status: JobState
    event_uuid: str | None = None
    event_id: str | None = None
    attempts: int = 0
    max_tries: int | None = None
    enqueued_at: float | None = None
    started: float | None = None
    finished: float | None = None
    next_attempt_at: float | None = None
    worker: str | None = None
    error: dict[str, Any] | None = None
    result: str | None = None
    #: why a waiting job does not run yet ("waiting: no live worker serves listener X")
    note: str | None = None

    @property
    def duration(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started

    @property
    def done(self) -> bool:
        return self.status in DONE_STATUSES

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__} | {"duration": self.duration}


@dataclass(frozen=True, slots=True)
class EventStatus:
    """An emitted event and its listener jobs."""

    event_uuid: str
    event_id: str
    emitted_at: float
    jobs: list[JobStatus] = field(default_factory=list)
    #: the uuid of the event whose listener emitted this one, if a listener did
    cause: str | None = None

    @property
    def status(self) -> JobState:
        """The most telling of its jobs' states: failed before in progress before complete."""
        statuses = {job.status for job in self.jobs}
        return next((s for s in _EVENT_PRECEDENCE if s in statuses), JobState.COMPLETE)

    @property
    def done(self) -> bool:
        return all(job.done for job in self.jobs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_uuid": self.event_uuid,
            "event_id": self.event_id,
            "emitted_at": self.emitted_at,
            "cause": self.cause,
            "status": self.status,
            "jobs": [job.to_dict() for job in self.jobs],
        }


def _state(value: Any) -> JobState:
    """A recorded status word as a JobState (``unknown`` for anything else)."""
    try:
        return JobState(value)
    except ValueError:
        return JobState.UNKNOWN


def _from_outcome(job_id: str, listener: str, outcome: dict[str, Any], **extra: Any) -> JobStatus:
    return JobStatus(
        job_id=job_id,
        listener=listener,
        status=_state(outcome.get("status")),
        attempts=outcome.get("job_try") or 0,
        max_tries=outcome.get("max_tries"),
        started=outcome.get("started"),
        finished=outcome.get("finished"),
        next_attempt_at=outcome.get("next_attempt_at"),
        worker=outcome.get("worker"),
        error=outcome.get("error"),
        result=outcome.get("result"),
        **extra,
    )


def _live_status(outcome_status: str | None, in_progress: bool, score: float | None, now_ms: float) -> str | None:
    """Status from arq's live keys; None when they say nothing (the job is not in the queue)."""
    if in_progress:
        return JobState.IN_PROGRESS
    if score is None:
        return None
    if outcome_status == JobState.RETRYING:
        return JobState.RETRYING
    return JobState.DEFERRED if score > now_ms else JobState.QUEUED


async def event_status(redis: Any, settings: Settings, event_uuid: str) -> EventStatus | None:
    """The event and each of its jobs' status, or None if unknown (or expired)."""
    (event,) = await event_statuses(redis, settings, [event_uuid])
    return event


async def event_statuses(redis: Any, settings: Settings, event_uuids: list[str]) -> list[EventStatus | None]:
    """``event_status`` of many events in a bounded number of round trips (not one per event)."""
    if not event_uuids:
        return []
    space = settings.keys
    async with redis.pipeline(transaction=False) as pipe:
        for event_uuid in event_uuids:
            pipe.hgetall(space.event(event_uuid))
        raws = await pipe.execute()
    records: list[tuple[str, dict[str, str], dict[str, str], dict[str, str]] | None] = []
    outcome_reads: list[tuple[int, str]] = []  # (record, outcomes hash on a queue tag) read below
    async with redis.pipeline(transaction=False) as pipe:
        for event_uuid, raw in zip(event_uuids, raws, strict=True):
            if not raw:
                records.append(None)
                continue
            fields = {as_text(k): as_text(v) for k, v in raw.items()}
            jobs_by_listener: dict[str, str] = json.loads(fields["jobs"])
            queues: dict[str, str] = json.loads(fields["queues"]) if "queues" in fields else {}
            records.append((event_uuid, fields, jobs_by_listener, queues))
            for listener, job_id in jobs_by_listener.items():
                pipe.exists(space.in_progress(job_id))
                pipe.zscore(queues.get(listener, settings.queue_key), job_id)
                pipe.exists(space.result(job_id))
            for key in _outcome_hashes(space, event_uuid, jobs_by_listener.values()):
                outcome_reads.append((len(records) - 1, key))
        for _, key in outcome_reads:
            pipe.hgetall(key)
        replies = await pipe.execute()
    live = replies[: len(replies) - len(outcome_reads)]
    for (n, _), raw in zip(outcome_reads, replies[len(live) :], strict=True):
        record = records[n]
        if record is not None and raw:
            record[1].update(_job_fields(raw))
    now_ms = time.time() * 1000
    events: list[EventStatus | None] = []
    n = 0
    for record in records:
        if record is None:
            events.append(None)
            continue
        event_uuid, fields, jobs_by_listener, _ = record
        emitted_at = int(fields["emitted_at"]) / 1000
        jobs = []
        for listener, job_id in jobs_by_listener.items():
            in_progress, score, has_result = live[3 * n : 3 * n + 3]
            n += 1
            outcome = json.loads(fields.get("job:" + job_id, "null")) or {}
            status = _live_status(outcome.get("status"), bool(in_progress), score, now_ms)
            if status is None:
                status = outcome.get("status") or ""
            extra = {"event_uuid": event_uuid, "event_id": fields["event"], "enqueued_at": emitted_at}
            job = _from_outcome(job_id, listener, {**outcome, "status": status}, **extra)
            if status == "":
                # not waiting or running, and no outcome when the record was read: it finished since
                # (its outcome is on the record now), or a stock arq worker ran it (arq's result)
                late = await redis.hget(space.space_of(job_id).outcomes(event_uuid), "job:" + job_id)
                if late:
                    job = _from_outcome(job_id, listener, json.loads(late), **extra)
                elif has_result:
                    job = await _from_arq_result(redis, settings, job_id) or job
                if job.status == "":
                    job = dataclasses.replace(job, status=JobState.UNKNOWN)
            jobs.append(job)
        events.append(EventStatus(event_uuid, fields["event"], emitted_at, jobs, fields.get("cause") or None))
    waiting = any(job.status in _WAITING_STATES for event in events if event is not None for job in event.jobs)
    if waiting:  # one look at the live workers for the whole page
        served = {name for worker in await live_workers(redis, space=space) for name in worker.listeners}
        for event in events:
            if event is None:
                continue
            for i, job in enumerate(event.jobs):
                if job.status in _WAITING_STATES and job.listener not in served:
                    note = f"waiting: no live worker serves listener {job.listener}"
                    event.jobs[i] = dataclasses.replace(job, note=note)
    return events


def _outcome_hashes(space: KeySpace, event_uuid: str, job_ids: Any) -> list[str]:
    """The hashes beside the event record with outcomes of the jobs ``job_ids`` of the event
    ``event_uuid``: one per queue tag they are on (none on one Redis: the record has them)."""
    hashes: dict[str, None] = {}
    for job_id in job_ids:
        job_space = space.space_of(job_id)
        if not job_space.is_control:
            hashes[job_space.outcomes(event_uuid)] = None
    return list(hashes)


def _job_fields(raw: dict[Any, Any]) -> dict[str, str]:
    """The ``job:<id>`` fields of an outcomes hash (not its ``stored`` mark)."""
    fields = {as_text(k): as_text(v) for k, v in raw.items()}
    return {k: v for k, v in fields.items() if k.startswith("job:")}


async def _from_arq_result(redis: Any, settings: Settings, job_id: str) -> JobStatus | None:
    space = settings.keys
    data = await redis.get(space.result(job_id))
    if data is None:
        return None
    result = decode_result(data, get_codec(settings.serializer).loads)
    failure = result.result if not result.success else None
    kind = failure.type_name if isinstance(failure, ListenerError) else type(failure).__qualname__
    if failure is None:
        status = JobState.COMPLETE
    elif kind.endswith("CancelledError"):
        status = JobState.ABORTED
    else:
        status = JobState.FAILED
    meta = (result.kwargs or {}).get(META_KWARG) or {}
    return JobStatus(
        job_id=job_id,
        listener=result.function,
        status=status,
        event_uuid=meta.get("event"),
        event_id=meta.get("event_id"),
        attempts=result.job_try,
        enqueued_at=result.enqueue_time,
        started=result.start_time,
        finished=result.finish_time,
        error={"type": kind, "message": str(getattr(failure, "message", failure))} if failure is not None else None,
    )


async def job_status(redis: Any, settings: Settings, job_id: str) -> JobStatus:
    """The status of one job by its id (``unknown`` if Redis has no trace of it)."""
    space = settings.keys
    event_uuid = await _event_of_job(redis, settings, job_id)
    found = await _job_of_event(redis, settings, event_uuid, job_id)
    if found is None and event_uuid is not None and event_uuid == space.event_of_job(job_id):
        # an id of that form whose event does not list it (an id chosen through arq, or an event
        # past its retention): what its own keys say
        stored = await _stored_event_of_job(redis, settings, job_id)
        if stored != event_uuid:
            found = await _job_of_event(redis, settings, stored, job_id)
    if found is not None:
        return found
    found = await _from_arq_result(redis, settings, job_id)
    if found is not None:
        return found
    dead = await redis.hgetall(space.dead(job_id))
    if dead:
        fields = {as_text(k): as_text(v) for k, v in dead.items()}
        return JobStatus(
            job_id=job_id,
            listener=fields.get("listener", ""),
            status=JobState.FAILED,
            event_id=fields.get("event_id") or None,
            error=json.loads(fields.get("error") or "null"),
        )
    return JobStatus(job_id=job_id, listener="", status=JobState.UNKNOWN)


async def _job_of_event(redis: Any, settings: Settings, event_uuid: str | None, job_id: str) -> JobStatus | None:
    """The job ``job_id`` as the record of the event ``event_uuid`` lists it, if it does."""
    event = await event_status(redis, settings, event_uuid) if event_uuid is not None else None
    for job in event.jobs if event else []:
        if job.job_id == job_id:
            return job
    return None


async def _event_of_job(redis: Any, settings: Settings, job_id: str) -> str | None:
    """The event a job belongs to: named by its id (taskemit's ids carry it; no read), else from
    its payload, its attempts, or its dead letter."""
    named = settings.keys.event_of_job(job_id)
    return named if named is not None else await _stored_event_of_job(redis, settings, job_id)


async def _stored_event_of_job(redis: Any, settings: Settings, job_id: str) -> str | None:
    """The event a job belongs to, from its payload, its attempts, arq's result or its dead letter
    (ids made before they named their event, or chosen by a user through arq)."""
    space = settings.keys
    codec = get_codec(settings.serializer)
    payload = await redis.get(space.job(job_id))
    if payload is not None:
        try:
            meta = codec.decode_job(payload)["k"].get(META_KWARG) or {}
            return str(meta["event"]) if meta.get("event") else None
        except Exception:
            return None
    last = await redis.lindex(space.attempts(job_id), -1)
    if last is not None:
        event = json.loads(last).get("event")
        return str(event) if event else None
    result = await redis.get(space.result(job_id))  # a finished job: arq's result keeps its arguments
    if result is not None:
        try:
            meta = (decode_result(result, codec.loads).kwargs or {}).get(META_KWARG) or {}
        except Exception:
            meta = {}
        if meta.get("event"):
            return str(meta["event"])
    event = await redis.hget(space.dead(job_id), "event_uuid")
    return as_text(event) if event else None


async def job_attempts(redis: Any, job_ids: list[str], *, space: KeySpace) -> dict[str, list[dict[str, Any]]]:
    """Each job's attempt history, oldest first, in one round trip. A job keeps one from its first
    failure or replay on: a job whose first attempt succeeded has none (its status has that attempt)."""
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.lrange(space.attempts(job_id), 0, -1)
        replies = await pipe.execute()
    return {job_id: [json.loads(entry) for entry in entries] for job_id, entries in zip(job_ids, replies, strict=True)}


async def wait_for_event(
    redis: Any,
    settings: Settings,
    event_uuid: str,
    timeout: float | None = None,
    poll: float = 0.05,
    max_poll: float = 1.0,
) -> EventStatus:
    """Wait until every job of the event is complete, failed or aborted; return the statuses.

    Reads the event every ``poll`` seconds at first, backing off to every ``max_poll``.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = poll
    while True:
        raise_if_cancelled()
        event = await event_status(redis, settings, event_uuid)
        if event is not None and event.done:
            return event
        if deadline is not None and time.monotonic() >= deadline:
            pending = [f"{j.listener}={j.status}" for j in event.jobs if not j.done] if event else ["no record"]
            raise WaitTimeout(f"event {event_uuid} not finished after {timeout}s: {', '.join(pending)}")
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, max_poll)
