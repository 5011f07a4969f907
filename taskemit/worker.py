"""The worker side: ``worker_settings()`` for arq, and the job function that runs a listener.

Each listener becomes one arq function named after the listener. Its job function strips
taskemit's metadata keyword, runs the user's function under the listener's timeout, records
the outcome on the event record, and lets the exception propagate so arq marks the job
failed. Nothing here replaces arq's worker: the stock ``arq`` CLI runs these settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from arq.connections import RedisSettings
from arq.worker import Function, create_worker, func
from redis.exceptions import RedisError

from . import keys, lua
from .codec import get_codec
from .listener import Listener, discover_listeners, index_listeners
from .settings import Settings, load_settings

__all__ = ("ListenerTimeout", "run_until_finished", "worker_settings")

logger = logging.getLogger("taskemit.worker")

_RECORD_OUTCOME = lua.script("record_outcome")
#: arq's own timeout sits above the listener's so the listener's fires first and is recorded.
_ARQ_TIMEOUT_MARGIN = 5.0
_WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


class ListenerTimeout(TimeoutError):
    """A listener ran longer than its timeout and was cancelled."""


def _short_repr(value: Any, limit: int = 200) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error_summary(exc: BaseException) -> dict[str, Any]:
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    return {
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": str(exc),
        "where": [f"{f.filename}:{f.lineno} in {f.name}" for f in frames],
    }


async def _record_outcome(
    ctx: dict[str, Any], meta: dict[str, Any] | None, listener_name: str, outcome: dict[str, Any]
) -> None:
    if not meta or "event" not in meta:
        return  # a job enqueued by plain arq code, not by an emit: nothing to record on
    outcome.update(listener=listener_name, job_try=ctx.get("job_try"), worker=_WORKER_ID)
    try:
        await _RECORD_OUTCOME(
            ctx["redis"],
            [keys.event_key(meta["event"])],
            ["job:" + ctx["job_id"], json.dumps(outcome)],
        )
    except (RedisError, OSError):  # the job's own result is still stored by arq
        logger.warning("could not record the outcome of job %s", ctx.get("job_id"), exc_info=True)


def job_function(item: Listener, settings: Settings) -> Callable[..., Awaitable[Any]]:
    """The arq coroutine that runs ``item`` for one job."""
    timeout = item.timeout or settings.job_timeout

    async def run_listener(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        meta = kwargs.pop(keys.META_KWARG, None)
        started = time.time()
        try:
            async with asyncio.timeout(timeout):
                result = await item.run(args, kwargs)
        except TimeoutError as exc:
            error = ListenerTimeout(f"listener {item.name!r} timed out after {timeout:g}s")
            await _record_outcome(
                ctx,
                meta,
                item.name,
                {"status": "failed", "started": started, "finished": time.time(), "error": _error_summary(error)},
            )
            raise error from exc
        except Exception as exc:
            await _record_outcome(
                ctx,
                meta,
                item.name,
                {"status": "failed", "started": started, "finished": time.time(), "error": _error_summary(exc)},
            )
            raise
        await _record_outcome(
            ctx,
            meta,
            item.name,
            {"status": "complete", "started": started, "finished": time.time(), "result": _short_repr(result)},
        )
        return result

    run_listener.__qualname__ = run_listener.__name__ = item.name
    return run_listener


def _arq_function(item: Listener, settings: Settings) -> Function:
    timeout = (item.timeout or settings.job_timeout) + _ARQ_TIMEOUT_MARGIN
    return func(
        job_function(item, settings),  # type: ignore[arg-type]  # arq's WorkerCoroutine is a Protocol
        name=item.name,
        timeout=timeout,
        keep_result=settings.result_retention,
    )


def worker_settings(
    listeners: Iterable[Any] | None = None,
    *,
    settings: Settings | None = None,
    **arq_options: Any,
) -> type:
    """An arq ``WorkerSettings`` class that runs ``listeners``.

    Args:
        listeners: the listeners this worker runs; default: those found in the modules of
            the ``listeners`` setting.
        settings: taskemit settings (default: ``load_settings()``).
        **arq_options: any other ``arq.worker.Worker`` option (``on_startup``, ``max_jobs``, ...).
    """
    settings = settings if settings is not None else load_settings()
    if listeners is None:
        listeners = discover_listeners(settings.listeners)
    unique = {item.name: item for items in index_listeners(listeners).values() for item in items}
    codec = get_codec(settings.serializer)
    attributes: dict[str, Any] = {
        "functions": [_arq_function(item, settings) for item in unique.values()],
        "queue_name": settings.queue_name,
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        "job_serializer": codec.dumps,
        "job_deserializer": codec.loads,
        "job_timeout": settings.job_timeout + _ARQ_TIMEOUT_MARGIN,
        "keep_result": settings.result_retention,
        "max_jobs": settings.max_jobs,
        "health_check_key": settings.queue_name + ":health-check",
        # not arq options: what taskemit's own commands read back
        "taskemit_settings": settings,
        "taskemit_listeners": tuple(unique.values()),
    }
    attributes.update(arq_options)
    return type("WorkerSettings", (), attributes)


async def run_until_finished(
    redis: Any,
    job_ids: Sequence[str],
    listeners: Sequence[Listener],
    settings: Settings,
    timeout: float | None = None,
) -> None:
    """Run an in-process arq worker until none of ``job_ids`` is still waiting or running.

    A job is finished when arq has deleted its payload key, which it does for success and
    failure alike.
    """
    worker = create_worker(
        worker_settings(listeners, settings=settings),
        handle_signals=False,
        burst=False,
        poll_delay=0.02,
    )
    task = asyncio.create_task(worker.async_run(), name="taskemit-drain-worker")
    pending = list(job_ids)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while pending:
            if task.done():
                task.result()
                raise RuntimeError("the in-process worker stopped before the jobs finished")
            async with redis.pipeline(transaction=False) as pipe:
                for job_id in pending:
                    pipe.exists(keys.job_key(job_id))
                exists = await pipe.execute()
            pending = [job_id for job_id, alive in zip(pending, exists, strict=True) if alive]
            if pending:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"{len(pending)} jobs did not finish within {timeout}s")
                await asyncio.sleep(0.02)
    finally:
        await worker.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
