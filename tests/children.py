"""What the tests that run real worker processes share: the children's environment, stopping
them, and a way for listeners in a child to record what they did in the test's Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

from redis import asyncio as aioredis

from taskemit.monitor.catalog import read_catalog
from taskemit.settings import Settings

TESTS = Path(__file__).resolve().parent
#: the one TASKEMIT_* variable children and isolated tests keep: the protocol the run tests
#: (CI's redis-py 8 leg sets it to 3)
PROTOCOL_ENV = "TASKEMIT_REDIS_PROTOCOL"


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a child process: ``settings``' Redis and namespace, this folder importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKEMIT_") or k == PROTOCOL_ENV}
    env.update(
        TASKEMIT_REDIS_URL=settings.redis_url,
        TASKEMIT_NAMESPACE=settings.namespace,
        PYTHONPATH=os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]),
        **extra,
    )
    return env


def stop(*children: subprocess.Popen[bytes]) -> None:
    """SIGKILL each child's process group (they start in sessions of their own) and reap it."""
    for child in children:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()


_client: aioredis.Redis | None = None


def client() -> aioredis.Redis:
    """One client of the test's Redis (``TASKEMIT_REDIS_URL``) for the listeners of a child process."""
    global _client
    if _client is None:
        _client = aioredis.Redis.from_url(os.environ["TASKEMIT_REDIS_URL"])
    return _client


async def push(key: str, value: str) -> int:
    """RPUSH to the test's Redis (``TASKEMIT_REDIS_URL``) from a listener in a child."""
    client = aioredis.Redis.from_url(os.environ["TASKEMIT_REDIS_URL"])
    try:
        return int(await client.rpush(key, value))
    finally:
        await client.aclose()


async def served_by(redis: aioredis.Redis, settings: Settings, name: str, count: int = 1, timeout: float = 20) -> None:
    """Wait until ``count`` live workers have registered listener ``name`` in the catalog."""
    deadline = time.monotonic() + timeout
    while True:
        entry = (await read_catalog(redis, space=settings.keys)).get(name)
        if entry is not None and len(entry.workers) >= count:
            return
        assert time.monotonic() < deadline, f"{name}: {entry and entry.workers} after {timeout}s"
        await asyncio.sleep(0.02)
