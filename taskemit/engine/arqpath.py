"""The stock arq path: each listener as an arq function, for ``arq module.WorkerSettings``.

arq's own worker calls the function with arq's ``ctx``; it runs one attempt with the
listener's :class:`~taskemit.engine.jobrun.ListenerRunner`, writes the outcome at once (one
script call), and tells arq what to do with the job: return (complete), raise arq's ``Retry``
(retry), or raise the listener's error (dead; arq stores it failed). arq settles the job's own
keys. taskemit's worker does not use this: it writes outcomes in batches (``engine/batch.py``).

arq is an optional dependency (the ``arq`` extra): without it, ``worker_settings()`` still
makes a class that ``taskemit worker`` runs, and what only arq's worker reads from it
(``functions``, ``redis_settings``) raises :class:`~taskemit.errors.MissingExtra` when read.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, NoReturn

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from ..emit.listener import Listener
from ..errors import MissingExtra
from ..monitor.deadrecord import record_dead_letter
from ..monitor.stats import outcome_args
from ..settings import Settings
from ..state import JobState
from ..store import scripts as lua
from ..store.codec import Codec
from ..store.connection import parse_redis_url
from .history import CTX_HISTORY, HistoryRecorder
from .jobrun import CTX_RUNNING, CTX_WORKER_ID, ListenerRunner
from .outcome import Outcome, dead_letter_details

__all__ = (
    "ARQ_MAX_TRIES",
    "ARQ_TIMEOUT_MARGIN",
    "NeedsArq",
    "NotOnCluster",
    "arq_functions",
    "arq_installed",
    "arq_redis_settings",
    "hook_client_class",
    "job_function",
    "require_arq",
)

logger = logging.getLogger("taskemit.worker")

_RECORD_ATTEMPT = lua.script("record_attempt", "lib_stats")

#: arq's own timeout sits above the listener's so the listener's fires first and is recorded.
ARQ_TIMEOUT_MARGIN = 5.0
#: arq's own try limit is set out of reach: the job function applies the listener's policy
#: and dead-letters the job itself, which arq's limit would pre-empt without a record.
ARQ_MAX_TRIES = 2**31


@functools.cache
def arq_installed() -> bool:
    """True when arq can be imported (the ``arq`` extra)."""
    return importlib.util.find_spec("arq") is not None


def require_arq(what: str) -> None:
    """Raise MissingExtra, naming ``what`` and the extra, when arq is not installed."""
    if not arq_installed():
        _missing(what)


def _missing(what: str) -> NoReturn:
    raise MissingExtra(
        f"{what} is part of the stock arq worker, which needs arq: pip install 'taskemit[arq]' "
        "(taskemit's own worker, `taskemit worker module:WorkerSettings`, runs without it)"
    )


class NeedsArq:
    """A ``WorkerSettings`` attribute that only arq's own worker reads, where arq is not installed:
    reading it raises MissingExtra saying so."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, instance: object, owner: type | None = None) -> NoReturn:
        _missing(f"WorkerSettings.{self.name}")


class NotOnCluster:
    """A ``WorkerSettings`` attribute that only arq's own worker reads, on a Redis Cluster URL:
    arq's worker has no cluster client, so reading it says that taskemit's worker is the one to run."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, instance: object, owner: type | None = None) -> NoReturn:
        raise MissingExtra(
            f"WorkerSettings.{self.name} is for the stock arq worker, which cannot run on a Redis Cluster "
            "(redis+cluster://): run taskemit's own worker, `taskemit worker module:WorkerSettings`"
        )


def hook_client_class() -> type[aioredis.Redis]:
    """The client class of a worker's ``ctx["redis"]``: arq's ``ArqRedis`` where arq is installed
    (the hooks and listeners of users can ``enqueue_job`` arq jobs with it), else redis-py's."""
    if not arq_installed():
        return aioredis.Redis
    from arq.connections import ArqRedis

    return ArqRedis


def arq_functions(listeners: Iterable[Listener], settings: Settings, codec: Codec) -> list[Any]:
    """One arq ``Function`` per listener, named after it (MissingExtra without arq)."""
    require_arq("WorkerSettings.functions")
    from arq.worker import func

    functions = []
    for item in listeners:
        policy = item.policy(settings.default_policy)
        functions.append(
            func(
                job_function(item, settings, codec),  # type: ignore[arg-type]  # arq's WorkerCoroutine is a Protocol
                name=item.name,
                timeout=(policy.timeout or settings.job_timeout) + ARQ_TIMEOUT_MARGIN,
                keep_result=settings.result_retention,
                max_tries=ARQ_MAX_TRIES,
            )
        )
    return functions


def arq_redis_settings(settings: Settings) -> Any:
    """arq's RedisSettings for the settings' Redis URL (a Sentinel URL included: arq follows the
    primary too; arq cannot give the Sentinels a password of their own). MissingExtra without arq."""
    require_arq("arq_redis_settings()")
    from arq.connections import RedisSettings

    target = parse_redis_url(settings.redis_url)
    if not target.sentinel:
        return RedisSettings.from_dsn(settings.redis_url)
    return RedisSettings(
        host=list(target.hosts),
        sentinel=True,
        sentinel_master=target.service,
        database=target.db,
        username=target.username,
        password=target.password,
        ssl=target.tls,
        conn_timeout=int(settings.connect_timeout) or 1,
    )


def job_function(item: Listener, settings: Settings, codec: Codec) -> Callable[..., Awaitable[Any]]:
    """The arq coroutine that runs ``item`` for one job, under its retry policy (arq's worker
    runs it, so arq is installed)."""
    from arq.worker import Retry as ArqRetry

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
    space = settings.keys.space_of(attempt.job_id)  # (its queue's tag on a Redis Cluster)
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
            [space.attempts(attempt.job_id), space.outcomes(event or "-"), *stats_keys, *job_keys],
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
