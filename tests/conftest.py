"""Shared fixtures: the taskemit pytest plugin (Redis server, settings, worker) plus helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis import asyncio as aioredis

from taskemit.settings import Settings


@pytest.fixture(autouse=True)
def _spool_in_tmp(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings loaded without the taskemit_settings fixture spool under a temporary directory too."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))


@pytest.fixture
async def redis(taskemit_settings: Settings) -> AsyncIterator[aioredis.Redis]:
    """A client on the test Redis (already flushed by taskemit_settings)."""
    client = aioredis.Redis.from_url(taskemit_settings.redis_url)
    yield client
    await client.aclose()
