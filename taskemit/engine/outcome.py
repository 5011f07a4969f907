"""What one attempt of a listener job produced, and the records written for it.

``JobRun`` holds the facts of one attempt (arguments, metadata, the ``Attempt``, timings);
``Outcome`` is what the attempt came to (complete, retry, dead, aborted) with the JSON records
of the job's history and of its event, ready for ``batch.JobStore`` (or the arq path) to write.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from ..attempt import Attempt
from ..monitor.stats import outcome_args
from ..settings import Settings
from ..state import JobState
from ..store.codec import META_KWARG, Codec, json_text

__all__ = ("JobRun", "Outcome", "dead_letter_details", "error_summary", "short_repr")


def error_summary(exc: BaseException) -> dict[str, Any]:
    """JSON-safe error: type, message and the last frames of the traceback."""
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    return {
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": str(exc),
        "where": [f"{f.filename}:{f.lineno} in {f.name}" for f in frames],
    }


def short_repr(value: Any, limit: int = 200) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class JobRun:
    """One attempt of one job: the facts every record of it needs."""

    __slots__ = ("args", "attempt", "call_args", "enqueue_ms", "kwargs", "meta", "started", "worker")

    def __init__(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        attempt: Attempt,
        meta: dict[str, Any],
        worker: str,
        enqueue_ms: int | None,
    ) -> None:
        #: the job's arguments as stored (a retry stores them again), and as the listener gets them
        #: (a typed event's data decoded into its class)
        self.args = self.call_args = args
        self.kwargs = kwargs
        self.attempt = attempt
        self.meta = meta
        self.worker = worker
        self.enqueue_ms = enqueue_ms if enqueue_ms is not None else int(time.time() * 1000)
        self.started = time.time()

    def with_event(self, event: Any) -> JobRun:
        """This run, calling the listener with ``event`` (a typed event decoded from the stored data)."""
        self.call_args = (event,)
        return self

    def attempt_json(self, status: str, **extra: Any) -> str:
        return json_text(
            {
                "event": self.attempt.event_uuid,
                "attempt": self.attempt.number,
                "status": status,
                "started": self.started,
                "finished": time.time(),
                "worker": self.worker,
                **extra,
            }
        )

    def outcome_json(self, status: str, **extra: Any) -> str:
        return json_text(
            {
                "status": status,
                "listener": self.attempt.listener,
                "job_try": self.attempt.number,
                "max_tries": self.attempt.max_tries,
                "started": self.started,
                "finished": time.time(),
                "worker": self.worker,
                **extra,
            }
        )

    def payload(self, codec: Codec, job_try: int | None = None) -> bytes:
        """The job's payload again (for its next attempt, or its dead letter)."""
        kwargs = {**self.kwargs, META_KWARG: self.meta}
        return codec.encode_job(self.attempt.listener, self.args, kwargs, enqueue_ms=self.enqueue_ms, job_try=job_try)


@dataclass(slots=True)
class Outcome:
    """What one attempt came to, with the records to write for it."""

    #: JobState.COMPLETE, RETRYING, FAILED (dead-lettered) or ABORTED
    state: JobState
    run: JobRun
    #: the attempt for the job's history ('' when the listener never ran, or when a first try
    #: succeeded: the history is kept from the first failure or replay on)
    attempt_json: str
    #: the job's outcome on its event record
    outcome_json: str
    #: what the listener's counters count (succeeded, failed, retried, dead)
    counted: tuple[str, ...]
    #: seconds the listener ran (None when it never ran)
    duration: float | None
    result: Any = None
    error: BaseException | None = None
    #: retry: the next attempt's payload, its TTL, and when it runs
    next_payload: bytes = b""
    ttl_ms: int = 0
    run_at_ms: int = 0
    #: dead: why, and the error as recorded
    reason: str = ""
    summary: dict[str, Any] = field(default_factory=dict)


def dead_letter_details(outcome: Outcome, settings: Settings, queue: str | None = None) -> dict[str, Any]:
    """``record_dead_letter``'s keywords for a dead outcome."""
    run = outcome.run
    attempt = run.attempt
    return {
        "job_id": attempt.job_id,
        "listener": attempt.listener,
        "event_uuid": run.meta.get("event"),
        "event_id": run.meta.get("event_id"),
        "reason": outcome.reason,
        "payload": outcome.next_payload,
        "error": outcome.summary,
        "final_attempt": outcome.attempt_json,
        "outcome": outcome.outcome_json,
        "enqueued_ms": run.enqueue_ms,
        "stats": outcome_args(
            settings.keys.space_of(attempt.job_id), attempt.listener, outcome.counted, outcome.duration
        ),
        "queue": queue,
    }
