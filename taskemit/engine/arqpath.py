"""The stock arq path: each listener as an arq function, for ``arq module.WorkerSettings``.

arq's own worker calls the function with arq's ``ctx``; it runs one attempt with the
listener's :class:`~taskemit.engine.jobrun.ListenerRunner`, writes the outcome at once (one
script call), and tells arq what to do with the job: return (complete), raise arq's ``Retry``
(retry), or raise the listener's error (dead; arq stores it failed). arq settles the job's own
keys. taskemit's worker does not use this: it writes outcomes in batches (``engine/batch.py``).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from arq.worker import Retry as ArqRetry
from redis.exceptions import RedisError

from ..emit.listener import Listener
from ..monitor.deadletter import record_dead_letter
from ..monitor.stats import outcome_args
from ..settings import Settings
from ..state import JobState
from ..store import scripts as lua
from ..store.codec import Codec
from .history import CTX_HISTORY, HistoryRecorder
from .jobrun import CTX_RUNNING, CTX_WORKER_ID, ListenerRunner
from .outcome import Outcome, dead_letter_details

__all__ = ("job_function",)

logger = logging.getLogger("taskemit.worker")

_RECORD_ATTEMPT = lua.script("record_attempt", "lib_stats")


def job_function(item: Listener, settings: Settings, codec: Codec) -> Callable[..., Awaitable[Any]]:
    """The arq coroutine that runs ``item`` for one job, under its retry policy."""
    runner = ListenerRunner(item, settings, codec)

    async def run_listener(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        enqueued = ctx.get("enqueue_time")
        worker = ctx.get(CTX_WORKER_ID) or f"{socket.gethostname()}:{os.getpid()}"
        run = runner.new_run(
            ctx["job_id"],
            ctx["job_try"],
            args,
            kwargs,
            worker,
            int(enqueued.timestamp() * 1000) if enqueued is not None else None,
        )
        running: Counter[str] | None = ctx.get(CTX_RUNNING)
        outcome = await runner.attempt(run, running)
        await _write(ctx["redis"], settings, outcome, ctx.get(CTX_HISTORY))
        if outcome.state is JobState.RETRYING:
            raise ArqRetry(defer=(outcome.run_at_ms / 1000) - time.time())
        if outcome.state is JobState.FAILED:
            assert outcome.error is not None
            raise outcome.error
        return outcome.result

    run_listener.__qualname__ = run_listener.__name__ = item.name
    return run_listener


async def _write(redis: Any, settings: Settings, outcome: Outcome, history: HistoryRecorder | None) -> None:
    """Record one outcome on the arq path (arq itself settles the job's own keys), and count it
    in the worker's history."""
    attempt = outcome.run.attempt
    space = settings.keys
    try:
        if outcome.state is JobState.FAILED:
            await record_dead_letter(redis, settings, **dead_letter_details(outcome, settings))
            if history is not None:
                history.record(outcome)
            return
        stats_keys, stats_args = outcome_args(space, attempt.listener, outcome.counted, outcome.duration)
        job_keys: list[str] = []
        job_args: list[Any] = []
        if outcome.state is JobState.RETRYING:  # keep the payload alive for the retry
            job_keys = [space.job(attempt.job_id), space.retry(attempt.job_id)]
            job_args = [outcome.next_payload, outcome.ttl_ms]
        event = outcome.run.meta.get("event")
        await _RECORD_ATTEMPT(
            redis,
            [space.attempts(attempt.job_id), space.event(event or "-"), *stats_keys, *job_keys],
            [
                outcome.attempt_json,
                settings.event_retention,
                "job:" + attempt.job_id,
                outcome.outcome_json,
                *stats_args,
                *job_args,
            ],
        )
        if history is not None:
            history.record(outcome)
    except (RedisError, OSError):  # the job's own result is still stored by arq
        logger.warning("could not record attempt %d of job %s", attempt.number, attempt.job_id, exc_info=True)
