"""Shared fixtures: the taskemit pytest plugin (Redis server, settings, worker) plus helpers."""

from __future__ import annotations

import importlib
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from redis import asyncio as aioredis

from taskemit.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"


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


@pytest.fixture
def examples(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], ModuleType]]:
    """``examples("quickstart")`` imports docs/examples/quickstart.py afresh, under its own name."""
    names = {p.stem for p in EXAMPLES.glob("*.py")}

    def forget() -> None:
        for name in names:
            sys.modules.pop(name, None)

    monkeypatch.syspath_prepend(str(EXAMPLES))
    forget()
    yield importlib.import_module
    forget()


@pytest.fixture
def point_env_at(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Set TASKEMIT_REDIS_URL / TASKEMIT_QUEUE_NAME (and more) from the test's settings."""

    def point(settings: Settings, **more: str) -> None:
        monkeypatch.setenv("TASKEMIT_REDIS_URL", settings.redis_url)
        monkeypatch.setenv("TASKEMIT_NAMESPACE", settings.namespace)
        for name, value in more.items():
            monkeypatch.setenv(f"TASKEMIT_{name.upper()}", value)

    return point
