"""Running one attempt of a listener job: call the listener, apply its retry policy.

:class:`ListenerRunner` runs one attempt and returns an :class:`Outcome`: what happened
and every record of it, ready to write. Nothing here writes to Redis: taskemit's worker
(``engine/loop.py``) writes a batch of outcomes per round trip (``engine/batch.py``), the arq
path (``engine/arqpath.py``, for stock arq workers) each outcome as it comes.

Per attempt the runner strips taskemit's metadata keyword, hands the listener an
:class:`~taskemit.Attempt` if it asks, enforces the per-attempt timeout, and decides one of:

- complete: the listener returned;
- retry: it failed and its policy retries it after a delay, with the next attempt's payload;
- dead: it failed for good, or has no tries left; the job goes to the dead letters.

A sync listener runs in a thread, which cannot be stopped: when it overruns its timeout the
runner waits for the thread to return before it reports the timeout, so the job keeps its
lease and is not started again while the first run is still going.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import datetime as dt
import functools
import inspect
import json
import logging
import random
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..attempt import Attempt, Retry
from ..emit.listener import Listener
from ..errors import AttemptsExhausted, ListenerTimeout
from ..monitor.stats import outcome_args
from ..policy import RetryPolicy
from ..settings import Settings
from ..state import JobState
from ..store.codec import META_KWARG, Codec

__all__ = ("JobRun", "ListenerRunner", "Outcome", "dead_letter_details", "job_parts")

logger = logging.getLogger("taskemit.worker")

#: ctx keys taskemit's worker fills in: its id, and a Counter of the listeners it runs now
CTX_WORKER_ID = "taskemit_worker_id"
CTX_RUNNING = "taskemit_running"
_jitter = random.Random()


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

    __slots__ = ("args", "attempt", "enqueue_ms", "kwargs", "meta", "started", "worker")

    def __init__(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        attempt: Attempt,
        meta: dict[str, Any],
        worker: str,
        enqueue_ms: int | None,
    ) -> None:
        self.args = args
        self.kwargs = kwargs
        self.attempt = attempt
        self.meta = meta
        self.worker = worker
        self.enqueue_ms = enqueue_ms if enqueue_ms is not None else int(time.time() * 1000)
        self.started = time.time()

    def attempt_json(self, status: str, **extra: Any) -> str:
        return json.dumps(
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
        return json.dumps(
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


class ListenerRunner:
    """Runs attempts of one listener under its policy and timeout."""

    __slots__ = ("codec", "item", "name", "policy", "settings", "threads", "timeout")

    def __init__(
        self,
        item: Listener,
        settings: Settings,
        codec: Codec,
        threads: concurrent.futures.Executor | None = None,
    ) -> None:
        self.item = item
        self.name = item.name
        self.settings = settings
        self.codec = codec
        self.policy: RetryPolicy = item.policy(settings.default_policy)
        self.timeout: float = self.policy.timeout or settings.job_timeout
        #: the pool sync listeners run in (None: asyncio's default executor)
        self.threads = threads

    def new_run(
        self,
        job_id: str,
        job_try: int,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        worker: str,
        enqueue_ms: int | None,
    ) -> JobRun:
        """A JobRun for a job's decoded arguments; takes taskemit's metadata out of ``kwargs``."""
        meta = kwargs.pop(META_KWARG, None) or {}
        if not isinstance(meta, dict):
            meta = {}
        attempt = Attempt(
            event_uuid=meta.get("event"),
            event_id=meta.get("event_id"),
            listener=self.name,
            job_id=job_id,
            number=job_try,
            max_tries=self.policy.max_tries,
            enqueued_at=dt.datetime.fromtimestamp(enqueue_ms / 1000, dt.UTC) if enqueue_ms else None,
        )
        return JobRun(args, kwargs, attempt, meta, worker, enqueue_ms)

    async def attempt(self, run: JobRun, running: Counter[str] | None = None) -> Outcome:
        """Run the listener once for ``run``; never raises what the listener raises."""
        attempt = run.attempt
        if attempt.number > self.policy.max_tries:
            exhausted = AttemptsExhausted(
                f"listener {self.name!r} job {attempt.job_id} has no tries left: attempt {attempt.number} of "
                f"{self.policy.max_tries} (earlier attempts were cut short by a crash or shutdown)"
            )
            return self.dead(run, exhausted, "attempts exhausted", ran=False)
        if running is not None:
            running[self.name] += 1
        try:
            result = await self._call(run)
        except asyncio.CancelledError:
            raise  # the worker is stopping, or the job was aborted: not an attempt that counts
        except BaseException as exc:  # SystemExit and the like too: a listener never stops the worker
            return self._failed(run, exc)
        finally:
            if running is not None:
                running[self.name] -= 1
        # a job's attempt history is kept once it has one: a first try that succeeds (the common
        # case) is recorded on the event record only
        history = attempt.number > 1 or "replay_of" in run.meta
        return Outcome(
            JobState.COMPLETE,
            run,
            run.attempt_json(JobState.COMPLETE) if history else "",
            run.outcome_json(JobState.COMPLETE, result=short_repr(result)),
            ("succeeded",),
            time.time() - run.started,
            result=result,
        )

    async def _call(self, run: JobRun) -> Any:
        item = self.item
        kwargs = run.kwargs
        if item.attempt_param is not None:
            kwargs = {**kwargs, item.attempt_param: run.attempt}
        if item.is_async:
            deadline = asyncio.timeout(self.timeout)
            try:
                async with deadline:
                    return await item.fn(*run.args, **kwargs)
            except TimeoutError as exc:
                if not deadline.expired():
                    raise  # the listener's own TimeoutError, not ours
                raise self._timed_out() from exc
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, item.fn, *run.args, **kwargs)
        thread = loop.run_in_executor(self.threads, call)
        done, _ = await asyncio.wait((thread,), timeout=self.timeout)
        if not done:
            logger.warning(
                "listener %s job %s overran its %gs timeout; its thread is still running, and the job "
                "keeps its lease until the thread returns",
                self.name,
                run.attempt.job_id,
                self.timeout,
            )
            await asyncio.wait((thread,))
            if not thread.cancelled():
                thread.exception()  # retrieved: what it raised after its timeout is not reported
            raise self._timed_out()
        result = thread.result()
        if inspect.isawaitable(result):  # a sync callable returning a coroutine
            async with asyncio.timeout(self.timeout):
                return await result
        return result

    def aborted(self, run: JobRun, started: bool) -> Outcome:
        """The outcome of a job stopped on request (``taskemit abort``, arq's ``Job.abort()``)."""
        logger.info("listener %s job %s aborted on request", self.name, run.attempt.job_id)
        return Outcome(
            JobState.ABORTED,
            run,
            "",
            run.outcome_json(JobState.ABORTED, reason="aborted on request", started_before=started),
            (),
            None,
            error=asyncio.CancelledError("aborted on request"),
        )

    def _timed_out(self) -> ListenerTimeout:
        return ListenerTimeout(f"listener {self.name!r} timed out after {self.timeout:g}s")

    def _failed(self, run: JobRun, error: BaseException) -> Outcome:
        """A retry or a dead letter, by the policy."""
        attempt = run.attempt
        policy = self.policy
        # a listener's own Retry asks for a retry whatever retry_on / give_up_on say
        retry = (
            attempt.number < policy.max_tries
            if isinstance(error, Retry)
            else policy.should_retry(error, attempt.number)
        )
        if not retry:
            return self.dead(run, error, _death_reason(policy, error, attempt.number), ran=True)
        summary = error_summary(error)
        delay = (
            error.after
            if isinstance(error, Retry) and error.after is not None
            else policy.delay_for(attempt.number, _jitter)
        )
        next_at = time.time() + delay
        logger.info(
            "listener %s job %s attempt %d/%d failed (%s); retrying in %.2fs",
            attempt.listener,
            attempt.job_id,
            attempt.number,
            policy.max_tries,
            summary["type"],
            delay,
        )
        return Outcome(
            JobState.RETRYING,
            run,
            run.attempt_json(JobState.FAILED, error=summary, next_attempt_at=next_at),
            run.outcome_json(JobState.RETRYING, error=summary, next_attempt_at=next_at),
            ("failed", "retried"),
            time.time() - run.started,
            error=error,
            next_payload=run.payload(self.codec, attempt.number + 1),
            ttl_ms=int((delay + self.settings.job_expiry) * 1000),
            run_at_ms=int(next_at * 1000),
            summary=summary,
        )

    def dead(self, run: JobRun, error: BaseException, reason: str, *, ran: bool) -> Outcome:
        attempt = run.attempt
        summary = error_summary(error)
        logger.warning(
            "listener %s job %s is dead after attempt %d/%d: %s (%s: %s)",
            attempt.listener,
            attempt.job_id,
            attempt.number,
            attempt.max_tries,
            reason,
            summary["type"],
            summary["message"],
        )
        return Outcome(
            JobState.FAILED,
            run,
            run.attempt_json(JobState.FAILED, error=summary) if ran else "",
            run.outcome_json(JobState.FAILED, error=summary, reason=reason, dead_letter=True),
            ("failed", "dead") if ran else ("dead",),
            time.time() - run.started if ran else None,
            error=error,
            next_payload=run.payload(self.codec),
            reason=reason,
            summary=summary,
        )


def _death_reason(policy: RetryPolicy, error: BaseException, attempt: int) -> str:
    if not isinstance(error, Retry) and isinstance(error, policy.give_up_on):
        return "gave up on " + type(error).__qualname__
    if attempt >= policy.max_tries:
        return "attempts exhausted"
    return f"{type(error).__qualname__} is not in retry_on"


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
        "stats": outcome_args(settings.keys, attempt.listener, outcome.counted, outcome.duration),
        "queue": queue,
    }


def job_parts(job: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any], int | None, int]:
    """args, kwargs, enqueue ms and try of a job ``Codec.decode_job`` returned."""
    return tuple(job["a"]), dict(job["k"]), job.get("et"), job.get("t") or 0
