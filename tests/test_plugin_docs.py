"""docs/examples/litestar_plugin.py, the example of docs/litestar.md and docs/dashboard.md, works as
those pages say (tests/test_docs.py checks that every example is shown and run)."""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import pytest
from children import PROTOCOL_ENV
from litestar.testing import AsyncTestClient

from taskemit import Settings
from taskemit.litestar import TaskEmitPlugin

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"
ADMIN = {"x-admin-token": "let-me-in"}


@pytest.fixture
def example(taskemit_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[ModuleType]:
    """The example, imported afresh with its settings and secrets from the environment."""
    for name in [
        n for n in os.environ if n.startswith("TASKEMIT_") and n not in ("TASKEMIT_TEST_REDIS_URL", PROTOCOL_ENV)
    ]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no settings.toml
    monkeypatch.setenv("TASKEMIT_REDIS_URL", taskemit_settings.redis_url)
    monkeypatch.setenv("TASKEMIT_NAMESPACE", taskemit_settings.namespace)
    monkeypatch.setenv("TASKEMIT_SPOOL_DIR", taskemit_settings.spool_dir)
    monkeypatch.setenv("TASKEMIT_IDLE_POLL", "0.2")  # a job emitted as the worker starts waits less
    monkeypatch.setenv("ADMIN_TOKEN", ADMIN["x-admin-token"])
    monkeypatch.setenv("CSRF_SECRET", "an example secret, thirty-two chars+")
    monkeypatch.syspath_prepend(str(EXAMPLES))
    sys.modules.pop("litestar_plugin", None)
    yield importlib.import_module("litestar_plugin")
    sys.modules.pop("litestar_plugin", None)


async def until(client: AsyncTestClient[Any], path: str, done: Any) -> Any:
    for _ in range(500):
        response = await client.get(path, headers=ADMIN)
        if response.status_code == 200 and done(response.json()):
            return response.json()
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path}: {response.status_code} {response.text}")


async def test_litestar_plugin_example_runs_orders_schedules_and_the_dashboard(
    example: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    app = example.create_app()
    async with AsyncTestClient(app) as client:
        response = await client.post("/orders", json={"order_id": 1001, "email": "ada@example.com"})
        assert response.status_code == 201
        placed = response.json()
        assert list(placed["jobs"]) == ["litestar_plugin:send_receipt"]
        # the worker in the app runs it
        event = await until(client, f"/taskemit/api/events/{placed['event']}", lambda e: e["done"])
        assert [job["result"] for job in event["jobs"]] == ["receipt for order 1001 sent to ada@example.com"]

        # the dashboard is for admins only
        assert (await client.get("/taskemit/events")).status_code == 403
        assert placed["event"] in (await client.get("/taskemit/events", headers=ADMIN)).text

        # the cron schedule, registered by the app's scheduler, fired by hand
        await until(
            client, "/taskemit/api/schedules", lambda found: [s["name"] for s in found] == ["daily sales report"]
        )
        token = client.cookies["taskemit_csrftoken"]
        trigger = "/taskemit/api/schedules/trigger?name=daily%20sales%20report"
        assert (await client.post(trigger, headers=ADMIN)).status_code == 403  # no CSRF token
        response = await client.post(trigger, headers={**ADMIN, "x-csrftoken": token})
        assert response.status_code == 200
        await until(client, f"/taskemit/api/events/{response.json()['event_uuid']}", lambda e: e["done"])
    assert "building the daily sales report" in capsys.readouterr().out


def test_litestar_plugin_example_has_the_cli_group(example: ModuleType) -> None:
    (plugin,) = [p for p in example.app.plugins if isinstance(p, TaskEmitPlugin)]
    root = click.Group("litestar")
    plugin.on_cli_init(root)
    assert {"worker", "events", "dead", "cron"} <= set(root.commands["taskemit"].commands)  # type: ignore[attr-defined]
