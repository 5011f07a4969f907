"""Shared fixtures: the taskemit pytest plugin (Redis server, settings, worker) plus helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis import asyncio as aioredis

from taskemit.settings import Settings


@pytest.fixture
async def redis(taskemit_settings: Settings) -> AsyncIterator[aioredis.Redis]:
    """A client on the test Redis (already flushed by taskemit_settings)."""
    client = aioredis.Redis.from_url(taskemit_settings.redis_url)
    yield client
    await client.aclose()
