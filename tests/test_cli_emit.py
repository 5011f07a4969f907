"""``taskemit emit``: from the shell to the listeners the catalog describes, checked first."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import pytest
from children import served_by
from click.testing import CliRunner, Result
from redis import asyncio as aioredis
from typed_events import UserCreated, UserEvent

from taskemit import listener
from taskemit.cli import cli
from taskemit.engine import InProcessWorker
from taskemit.monitor import event_status
from taskemit.settings import Settings
from taskemit.store.redis_server import free_port

runs: list[Any] = []


@listener("user_created", name="cli.welcome")
async def welcome(email: str, plan: str = "free") -> None:
    runs.append((email, plan))


@listener("user_created", name="cli.fails", max_tries=1)
async def fails(email: str, **kwargs: Any) -> None:
    raise PermissionError(f"{email} is blocked")


@listener(name="cli.typed")
async def typed(event: UserEvent) -> None:
    runs.append(event)


@pytest.fixture(autouse=True)
def _reset() -> None:
    runs.clear()


@pytest.fixture
def settings(taskemit_settings: Settings) -> Settings:
    return taskemit_settings.model_copy(update={"drain_on_exit": False})


async def run(settings: Settings, *args: str, url: str | None = None) -> Result:
    where = ["--redis-url", url or settings.redis_url, "--namespace", settings.namespace]
    return await asyncio.to_thread(CliRunner().invoke, cli, [*where, *args])


async def test_emit_checks_the_catalog_and_runs_the_listeners(settings: Settings, redis: aioredis.Redis) -> None:
    async with InProcessWorker([welcome, typed], settings):
        for name in ("cli.welcome", "cli.typed"):
            await served_by(redis, settings, name)
        done = await run(settings, "emit", "user_created", "--data", '{"email": "a@b", "plan": "pro"}', "--wait")
        assert done.exit_code == 0, done.output
        assert runs == [("a@b", "pro")]  # --wait: finished before the command returned
        assert "1 jobs finished" in done.output and "cli.welcome: " in done.output
        as_json = await run(settings, "emit", "user_created", "--data", '["c@d"]', "--json")
        assert as_json.exit_code == 0, as_json.output
        receipt = json.loads(as_json.output)
        assert list(receipt["jobs"]) == ["cli.welcome"] and receipt["event_id"] == "user_created"
        typo = await run(settings, "emit", "user_created", "--data", '{"mail": "a@b"}')
        assert typo.exit_code == 2 and "cli.welcome" in typo.output and "email" in typo.output
        unknown = await run(settings, "emit", "user_renamed")
        assert unknown.exit_code == 4 and "no listener of 'user_renamed'" in unknown.output
        not_json = await run(settings, "emit", "user_created", "--data", "{email}")
        assert not_json.exit_code == 2 and "not JSON" in not_json.output
        path = "typed_events:UserCreated"
        typed_run = await run(settings, "emit", path, "--data", '{"user": 7, "email": "t@u"}', "--wait")
        assert typed_run.exit_code == 0, typed_run.output
        assert UserCreated(user=7, email="t@u") in runs  # decoded as the class, routed through its MRO
        bad = await run(settings, "emit", path, "--data", '{"user": "seven", "email": "t@u"}')
        assert bad.exit_code == 2 and "does not validate" in bad.output
    status = await event_status(redis, settings, receipt["event_uuid"])
    assert status is not None and status.jobs[0].status == "complete"
    assert ("c@d", "free") in runs


async def test_emit_wait_reports_failures_and_unreachable_redis(settings: Settings, redis: aioredis.Redis) -> None:
    async with InProcessWorker([welcome, fails], settings):
        for name in ("cli.welcome", "cli.fails"):
            await served_by(redis, settings, name)
        failed = await run(settings, "emit", "user_created", "--data", '{"email": "x@y"}', "--wait")
    assert failed.exit_code == 1
    assert "failed: listener cli.fails: builtins.PermissionError: x@y is blocked" in failed.output
    closed = subprocess.run(
        [sys.executable, "-m", "taskemit", "--redis-url", f"redis://127.0.0.1:{free_port()}/0", "emit", "user_created"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert closed.returncode == 3 and "cannot reach Redis" in closed.stderr
