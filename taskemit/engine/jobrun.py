"""Running one listener job: call the listener, apply its retry policy, record the outcome.

The arq function registered for a listener is built here. Per attempt it strips
taskemit's metadata keyword, hands the listener an :class:`~taskemit.Attempt` if it asks,
enforces the per-attempt timeout, and then one of three things happens, each recorded in
Redis by one Lua script call:

- success: the attempt is appended to the job's history, the event record says complete;
- a retry: the same, plus the job payload is kept alive past the retry time, and arq's
  ``Retry`` defers the job by the policy's delay;
- dead: the job goes to the dead letters with its payload and every attempt, and the
  listener's exception propagates so arq stores the job as failed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import socket
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from arq.worker import Retry as ArqRetry
from redis.exceptions import RedisError

from ..attempt import Attempt, Retry
from ..emit.listener import Listener
from ..errors import AttemptsExhausted, ListenerTimeout
from ..monitor.deadletter import record_dead_letter
from ..monitor.stats import outcome_args
from ..policy import RetryPolicy
from ..settings import Settings
from ..state import JobState
from ..store import scripts as lua
from ..store.codec import META_KWARG, Codec
from ..store.keys import KeySpace

__all__ = ("job_function",)

logger = logging.getLogger("taskemit.worker")

_RECORD_ATTEMPT = lua.script("record_attempt", "lib_stats")
#: ctx keys a TaskEmitWorker fills in: its id, and a Counter of the listeners it runs now
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


class _JobRun:
    """One attempt of one job: the facts every record of it needs."""

    __slots__ = ("args", "attempt", "ctx", "kwargs", "meta", "started", "worker")

    def __init__(
        self, ctx: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any], attempt: Attempt, meta: dict[str, Any]
    ) -> None:
        self.ctx = ctx
        self.args = args
        self.kwargs = kwargs
        self.attempt = attempt
        self.meta = meta
        self.started = time.time()
        self.worker = ctx.get(CTX_WORKER_ID) or f"{socket.gethostname()}:{os.getpid()}"

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

    def record_keys(self, space: KeySpace) -> list[str]:
        event = self.meta.get("event")
        return [space.attempts(self.attempt.job_id), space.event(event) if event else space.event("-")]


def job_function(item: Listener, settings: Settings, codec: Codec) -> Callable[..., Awaitable[Any]]:
    """The arq coroutine that runs ``item`` for one job, under its retry policy."""
    policy = item.policy(settings.default_policy)
    timeout = policy.timeout or settings.job_timeout

    async def run_listener(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        meta = kwargs.pop(META_KWARG, None) or {}
        attempt = Attempt(
            event_uuid=meta.get("event"),
            event_id=meta.get("event_id"),
            listener=item.name,
            job_id=ctx["job_id"],
            number=ctx["job_try"],
            max_tries=policy.max_tries,
            enqueued_at=ctx.get("enqueue_time"),
        )
        run = _JobRun(ctx, args, kwargs, attempt, meta)
        if attempt.number > policy.max_tries:
            exhausted = AttemptsExhausted(
                f"listener {item.name!r} job {attempt.job_id} has no tries left: attempt {attempt.number} of "
                f"{policy.max_tries} (earlier attempts were cut short by a crash or shutdown)"
            )
            await _dead(run, settings, codec, exhausted, "attempts exhausted", ran=False)
            raise exhausted
        running: Counter[str] = ctx[CTX_RUNNING] if CTX_RUNNING in ctx else Counter()  # absent: stock arq
        running[item.name] += 1
        try:
            async with asyncio.timeout(timeout):
                result = await item.run(args, kwargs, attempt)
        except asyncio.CancelledError:
            raise  # worker shutdown or abort: arq decides what happens to the job
        except Exception as exc:
            if isinstance(exc, TimeoutError) and not isinstance(exc, ListenerTimeout):
                error: Exception = ListenerTimeout(f"listener {item.name!r} timed out after {timeout:g}s")
                error.__cause__ = exc
            else:
                error = exc
            await _failed(run, settings, codec, policy, error)  # raises arq's Retry to retry
            if error is exc:
                raise
            raise error from exc
        finally:
            running[item.name] -= 1
        await _record(
            run,
            run.attempt_json(JobState.COMPLETE),
            run.outcome_json(JobState.COMPLETE, result=short_repr(result)),
            settings,
            ["succeeded"],
        )
        return result

    run_listener.__qualname__ = run_listener.__name__ = item.name
    return run_listener


async def _record(
    run: _JobRun,
    attempt_json: str,
    outcome_json: str,
    settings: Settings,
    outcomes: list[str],
    keep_alive: tuple[bytes, int] | None = None,
) -> None:
    """Record the attempt, its counters and the job's outcome; with ``keep_alive`` (the next
    attempt's payload and a TTL in ms) also keep the job alive for its retry."""
    attempt = run.attempt
    space = settings.keys
    stats_keys, stats_args = outcome_args(space, attempt.listener, outcomes, time.time() - run.started)
    job_keys: list[str] = []
    job_args: list[Any] = []
    if keep_alive is not None:
        job_keys = [space.job(attempt.job_id), space.retry(attempt.job_id)]
        job_args = list(keep_alive)
    try:
        await _RECORD_ATTEMPT(
            run.ctx["redis"],
            [*run.record_keys(space), *stats_keys, *job_keys],
            [attempt_json, settings.event_retention, "job:" + attempt.job_id, outcome_json, *stats_args, *job_args],
        )
    except (RedisError, OSError):  # the job's own result is still stored by arq
        logger.warning("could not record attempt %d of job %s", attempt.number, attempt.job_id, exc_info=True)


async def _failed(run: _JobRun, settings: Settings, codec: Codec, policy: RetryPolicy, error: Exception) -> None:
    """Schedule a retry (raising arq's Retry) or dead-letter the job."""
    attempt = run.attempt
    # a listener's own Retry asks for a retry whatever retry_on / give_up_on say
    retry = (
        attempt.number < policy.max_tries if isinstance(error, Retry) else policy.should_retry(error, attempt.number)
    )
    summary = error_summary(error)
    if not retry:
        await _dead(run, settings, codec, error, _death_reason(policy, error, attempt.number), ran=True)
        return
    delay = (
        error.after
        if isinstance(error, Retry) and error.after is not None
        else policy.delay_for(attempt.number, _jitter)
    )
    next_at = time.time() + delay
    payload = codec.encode_job(
        attempt.listener,
        run.args,
        {**run.kwargs, META_KWARG: run.meta},
        enqueue_ms=_enqueue_ms(run),
        job_try=attempt.number + 1,
    )
    ttl_ms = int((delay + settings.job_expiry) * 1000)
    logger.info(
        "listener %s job %s attempt %d/%d failed (%s); retrying in %.2fs",
        attempt.listener,
        attempt.job_id,
        attempt.number,
        policy.max_tries,
        summary["type"],
        delay,
    )
    await _record(
        run,
        run.attempt_json(JobState.FAILED, error=summary, next_attempt_at=next_at),
        run.outcome_json(JobState.RETRYING, error=summary, next_attempt_at=next_at),
        settings,
        ["failed", "retried"],
        keep_alive=(payload, ttl_ms),
    )
    raise ArqRetry(defer=delay)


def _death_reason(policy: RetryPolicy, error: Exception, attempt: int) -> str:
    if not isinstance(error, Retry) and isinstance(error, policy.give_up_on):
        return "gave up on " + type(error).__qualname__
    if attempt >= policy.max_tries:
        return "attempts exhausted"
    return f"{type(error).__qualname__} is not in retry_on"


def _enqueue_ms(run: _JobRun) -> int:
    enqueued = run.attempt.enqueued_at
    return int(enqueued.timestamp() * 1000) if enqueued is not None else int(time.time() * 1000)


async def _dead(run: _JobRun, settings: Settings, codec: Codec, error: Exception, reason: str, *, ran: bool) -> None:
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
    payload = codec.encode_job(
        attempt.listener, run.args, {**run.kwargs, META_KWARG: run.meta}, enqueue_ms=_enqueue_ms(run)
    )
    try:
        await record_dead_letter(
            run.ctx["redis"],
            settings,
            job_id=attempt.job_id,
            listener=attempt.listener,
            event_uuid=run.meta.get("event"),
            event_id=run.meta.get("event_id"),
            reason=reason,
            payload=payload,
            error=summary,
            final_attempt=run.attempt_json(JobState.FAILED, error=summary) if ran else "",
            outcome=run.outcome_json(JobState.FAILED, error=summary, reason=reason, dead_letter=True),
            enqueued_ms=_enqueue_ms(run),
            stats=outcome_args(
                settings.keys,
                attempt.listener,
                ["failed", "dead"] if ran else ["dead"],
                time.time() - run.started if ran else None,
            ),
        )
    except (RedisError, OSError):
        logger.error("could not store the dead letter of job %s", attempt.job_id, exc_info=True)
