"""The dashboard's JSON types (msgspec structs, so the OpenAPI schema has them) and their making
from ``taskemit.monitor``'s records."""

from __future__ import annotations

from typing import Any

import msgspec

from ..monitor import DeadLetter, EventStatus, JobStatus, ListenerStats, ListenerView, QueueView, WorkerInfo
from ..monitor.outbox import RelayReport
from ..redact import redact
from ..state import JobState

__all__ = (
    "AbortOut",
    "AttemptOut",
    "DeadLetterOut",
    "DeadLetterPageOut",
    "ErrorOut",
    "EventOut",
    "EventPageOut",
    "JobOut",
    "ListenerOut",
    "OutboxRelayOut",
    "PurgeOut",
    "QueueOut",
    "ReplayAllOut",
    "ReplayOut",
    "SkippedOut",
    "WorkerOut",
)


class ErrorOut(msgspec.Struct, kw_only=True):
    """Why an attempt failed: the exception's type and message, and where it was raised."""

    type: str = ""
    message: str = ""
    where: list[str] = msgspec.field(default_factory=list)


class AttemptOut(msgspec.Struct, kw_only=True):
    """One entry of a job's attempt history (a finished attempt, or a replay)."""

    status: str
    attempt: int | None = None
    started: float | None = None
    finished: float | None = None
    worker: str | None = None
    error: ErrorOut | None = None
    #: a replay: when, and the job ids on both sides of it
    at: float | None = None
    replay_of: str | None = None
    new_job_id: str | None = None


class JobOut(msgspec.Struct, kw_only=True):
    """A listener job of an event; ``history`` only where one job or event is asked for."""

    job_id: str
    listener: str
    status: JobState
    attempts: int
    max_tries: int | None
    enqueued_at: float | None
    started: float | None
    finished: float | None
    duration: float | None
    next_attempt_at: float | None
    worker: str | None
    error: ErrorOut | None
    result: str | None
    note: str | None
    event_uuid: str | None = None
    event_id: str | None = None
    history: list[AttemptOut] = msgspec.field(default_factory=list)


class EventOut(msgspec.Struct, kw_only=True):
    event_uuid: str
    event_id: str
    emitted_at: float
    status: JobState
    done: bool
    jobs: list[JobOut]
    #: the uuid of the event whose listener emitted this one, if a listener did
    cause: str | None = None


class EventPageOut(msgspec.Struct, kw_only=True):
    """Events newest first; pass ``next_cursor`` back as ``cursor`` for the next page."""

    items: list[EventOut]
    next_cursor: str | None


class DeadLetterOut(msgspec.Struct, kw_only=True):
    """A job that will not be tried again. ``arguments`` has secret-looking values redacted."""

    job_id: str
    listener: str
    event_uuid: str | None
    event_id: str | None
    queue: str | None
    reason: str
    died_at: float
    enqueued_at: float | None
    error: ErrorOut
    tries: int
    attempts: list[AttemptOut]
    arguments: dict[str, Any] | None
    #: why the arguments could not be shown (a payload that does not decode)
    undecodable: str | None = None


class DeadLetterPageOut(msgspec.Struct, kw_only=True):
    items: list[DeadLetterOut]
    next_cursor: int | None


class ListenerOut(msgspec.Struct, kw_only=True):
    """A listener: where its jobs wait, who runs them, and its counters since they were first kept."""

    listener: str
    queue: str
    #: from the listener catalog: its delivery mode and the events it takes (ids or class paths)
    mode: str
    events: list[str]
    queued: int
    running: int
    workers: int
    #: dead letters kept now
    dead_letters: int
    succeeded: int
    failed: int
    retried: int
    #: jobs that went to the dead letters, ever
    died: int
    succeeded_per_s: float
    failed_per_s: float
    p50: float | None
    p95: float | None
    mean: float | None
    #: its flow control: its limits, what is in use of them, the jobs waiting on them ('' and
    #: None when it declares none)
    limits: str = ""
    in_use: str = ""
    waiting: int | None = None


class WorkerOut(msgspec.Struct, kw_only=True):
    worker_id: str
    host: str
    pid: int
    queues: list[str]
    listeners: list[str]
    concurrency: int
    started: float
    last_seen: float
    jobs_running: int
    jobs_complete: int
    jobs_failed: int
    jobs_retried: int
    running: dict[str, int]
    outages: int
    loop_lag: float


class OutboxRelayOut(msgspec.Struct, kw_only=True):
    """An outbox relay's last report: its database, the rows waiting, the age of the oldest, its errors."""

    relay_id: str
    database: str
    table: str
    host: str
    pid: int
    claims: str
    started: float
    reported: float
    backlog: int
    lag: float
    relayed: int
    errors: int
    last_error: str
    last_error_at: float


class QueueOut(msgspec.Struct, kw_only=True):
    """Jobs of one queue: due and waiting, running, due later (deferred and retries)."""

    queue: str
    queued: int
    running: int
    delayed: int
    listeners: int
    workers: int


class ReplayOut(msgspec.Struct, kw_only=True):
    job_id: str
    new_job_id: str
    event_uuid: str | None


class SkippedOut(msgspec.Struct, kw_only=True):
    job_id: str
    reason: str


class ReplayAllOut(msgspec.Struct, kw_only=True):
    replayed: list[ReplayOut]
    skipped: list[SkippedOut]


class PurgeOut(msgspec.Struct, kw_only=True):
    purged: int


class AbortOut(msgspec.Struct, kw_only=True):
    """``aborted`` (it was waiting), ``requested`` (it runs: its worker cancels it), ``missing``."""

    job_id: str
    outcome: str


def error_out(error: dict[str, Any] | None) -> ErrorOut | None:
    if not error:
        return None
    where = error.get("where")
    return ErrorOut(
        type=str(error.get("type", "")),
        message=str(error.get("message", "")),
        where=[str(w) for w in where] if isinstance(where, list) else [],
    )


def attempt_out(entry: dict[str, Any]) -> AttemptOut:
    return AttemptOut(
        status=str(entry.get("status", "")),
        attempt=entry.get("attempt"),
        started=entry.get("started"),
        finished=entry.get("finished"),
        worker=entry.get("worker"),
        error=error_out(entry.get("error")),
        at=entry.get("at"),
        replay_of=entry.get("replay_of"),
        new_job_id=entry.get("new_job_id"),
    )


def job_out(job: JobStatus, history: list[dict[str, Any]] | None = None) -> JobOut:
    return JobOut(
        job_id=job.job_id,
        listener=job.listener,
        status=job.status,
        attempts=job.attempts,
        max_tries=job.max_tries,
        enqueued_at=job.enqueued_at,
        started=job.started,
        finished=job.finished,
        duration=job.duration,
        next_attempt_at=job.next_attempt_at,
        worker=job.worker,
        error=error_out(job.error),
        result=job.result,
        note=job.note,
        event_uuid=job.event_uuid,
        event_id=job.event_id,
        history=[attempt_out(entry) for entry in history or ()],
    )


def event_out(event: EventStatus, histories: dict[str, list[dict[str, Any]]] | None = None) -> EventOut:
    histories = histories or {}
    return EventOut(
        event_uuid=event.event_uuid,
        event_id=event.event_id,
        emitted_at=event.emitted_at,
        status=event.status,
        done=event.done,
        jobs=[job_out(job, histories.get(job.job_id)) for job in event.jobs],
        cause=event.cause,
    )


def dead_letter_out(letter: DeadLetter, serializer: str, redact_keys: list[str]) -> DeadLetterOut:
    arguments: dict[str, Any] | None
    undecodable = None
    try:
        args, kwargs = letter.arguments(serializer)
        arguments = redact({"args": list(args), "kwargs": kwargs}, redact_keys)
    except Exception as exc:  # an undecodable payload is one reason a job dies
        arguments, undecodable = None, str(exc)
    return DeadLetterOut(
        job_id=letter.job_id,
        listener=letter.listener,
        event_uuid=letter.event_uuid,
        event_id=letter.event_id,
        queue=letter.queue,
        reason=letter.reason,
        died_at=letter.died_at,
        enqueued_at=letter.enqueued_at,
        error=error_out(letter.error) or ErrorOut(),
        tries=sum(1 for a in letter.attempts if a.get("status") == JobState.FAILED),
        attempts=[attempt_out(entry) for entry in letter.attempts],
        arguments=arguments,
        undecodable=undecodable,
    )


def listener_out(view: ListenerView | None, stats: ListenerStats | None, name: str) -> ListenerOut:
    return ListenerOut(
        listener=name,
        queue=view.queue if view else "",
        mode=view.mode if view else "pool",
        events=list(view.events) if view else [],
        queued=view.queued if view else 0,
        running=view.running if view else 0,
        workers=view.workers if view else 0,
        dead_letters=view.dead if view else 0,
        succeeded=stats.succeeded if stats else 0,
        failed=stats.failed if stats else 0,
        retried=stats.retried if stats else 0,
        died=stats.dead if stats else 0,
        succeeded_per_s=stats.succeeded_rate if stats else 0.0,
        failed_per_s=stats.failed_rate if stats else 0.0,
        p50=stats.p50 if stats else None,
        p95=stats.p95 if stats else None,
        mean=stats.mean if stats else None,
        limits=view.flow.declared.describe() if view and view.flow else "",
        in_use=view.flow.in_use() if view and view.flow else "",
        waiting=view.flow.waiting if view and view.flow else None,
    )


def worker_out(worker: WorkerInfo) -> WorkerOut:
    return WorkerOut(
        worker_id=worker.worker_id,
        host=worker.host,
        pid=worker.pid,
        queues=list(worker.queues),
        listeners=list(worker.listeners),
        concurrency=worker.concurrency,
        started=worker.started,
        last_seen=worker.last_seen,
        jobs_running=worker.jobs_running,
        jobs_complete=worker.jobs_complete,
        jobs_failed=worker.jobs_failed,
        jobs_retried=worker.jobs_retried,
        running=dict(worker.running),
        outages=worker.outages,
        loop_lag=worker.loop_lag,
    )


def outbox_relay_out(report: RelayReport) -> OutboxRelayOut:
    return OutboxRelayOut(**report.to_dict())


def queue_out(view: QueueView) -> QueueOut:
    return QueueOut(
        queue=view.queue,
        queued=view.queued,
        running=view.running,
        delayed=view.delayed,
        listeners=view.listeners,
        workers=view.workers,
    )
