"""TaskEmitPlugin: the backend with the config's settings, the Emitter as a dependency, an in-app
worker with cron schedules, `litestar taskemit ...`, and the configuration errors it refuses."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import click
import pytest
from click.testing import CliRunner
from litestar import Litestar, Request, post
from litestar.di import NamedDependency
from litestar.events import SimpleEventEmitter
from litestar.exceptions import ImproperlyConfiguredException
from litestar.params import Parameter
from litestar.testing import AsyncTestClient
from redis import asyncio as aioredis

from taskemit import CronConfigError, Emitter, Settings, cron, listener, load_settings
from taskemit.litestar import ArqEventEmitter, TaskEmitConfig, TaskEmitPlugin
from taskemit.litestar.cli import settings_environment
from taskemit.monitor import event_status, events_between, recent_events

ran: list[tuple[str, Any]] = []
OrderId = Annotated[int, Parameter()]


@listener("order_placed", name="shop:confirm")
async def confirm_order(order_id: int) -> str:
    ran.append(("confirm", order_id))
    return f"order {order_id} confirmed"


@listener("tick", name="shop:tick")
async def on_tick(**kwargs: Any) -> None:
    ran.append(("tick", None))


@post("/orders/{order_id:int}")
async def place_order(order_id: OrderId, emitter: NamedDependency[Emitter]) -> dict[str, Any]:
    receipt = await emitter.publish("order_placed", order_id=order_id)
    assert receipt is not None
    return {"event": receipt.event_uuid, "jobs": receipt.jobs}


@post("/emit/{order_id:int}")
async def emit_order(order_id: OrderId, request: Request[Any, Any, Any]) -> None:
    request.app.emit("order_placed", order_id=order_id)


@pytest.fixture
def settings(taskemit_settings: Settings) -> Settings:
    ran.clear()
    return taskemit_settings.model_copy(update={"drain_on_exit": False})


async def test_backend_uses_the_config_settings_and_handlers_get_the_emitter(
    redis: aioredis.Redis, settings: Settings
) -> None:
    plugin = TaskEmitPlugin(TaskEmitConfig(listeners=[confirm_order], settings=settings))
    app = Litestar([place_order, emit_order], plugins=[plugin])
    assert isinstance(app.event_emitter, ArqEventEmitter)
    assert app.event_emitter.emitter.settings is settings  # not read from the environment
    async with AsyncTestClient(app) as client:
        response = await client.post("/orders/7")
        assert response.status_code == 201
        assert (await client.post("/emit/8")).status_code == 201
    body = response.json()
    assert list(body["jobs"]) == [confirm_order.name]
    event = await event_status(redis, settings, body["event"])
    assert event is not None and event.event_id == "order_placed"
    assert [job.status for job in event.jobs] == ["queued"]  # no worker runs in the app by default
    assert len(await events_between(redis, 0, 2**40, space=settings.keys)) == 2
    assert ran == []


async def test_the_dependency_name_is_configurable(settings: Settings) -> None:
    @post("/bus")
    async def handler(bus: NamedDependency[Emitter]) -> str:
        receipt = await bus.publish("order_placed", order_id=1)
        return type(receipt).__name__

    config = TaskEmitConfig(listeners=[confirm_order], settings=settings, emitter_dependency_key="bus")
    async with AsyncTestClient(Litestar([handler], plugins=[TaskEmitPlugin(config)])) as client:
        assert (await client.post("/bus")).text == "EmitReceipt"


async def test_run_workers_in_app_runs_listeners_and_cron_schedules(redis: aioredis.Redis, settings: Settings) -> None:
    every_second = cron("* * * * * *", "tick", name="tick-every-second")
    config = TaskEmitConfig(
        listeners=[confirm_order, on_tick], crons=[every_second], settings=settings, run_workers_in_app=True
    )
    async with AsyncTestClient(Litestar([place_order], plugins=[TaskEmitPlugin(config)])) as client:
        body = (await client.post("/orders/9")).json()
        # a tick comes each second; a loaded machine may take a while to run it and the job
        deadline = time.monotonic() + 30
        while not (("confirm", 9) in ran and ("tick", None) in ran):
            assert time.monotonic() < deadline, ran
            await asyncio.sleep(0.05)
    event = await event_status(redis, settings, body["event"])
    assert event is not None and [(job.status, job.result) for job in event.jobs] == [("complete", "order 9 confirmed")]
    ticks = await recent_events(redis, settings, event_id="tick")
    assert ticks.items and all(e.status == "complete" for e in ticks.items)


def test_a_schedule_without_a_listener_fails_when_the_app_is_built(settings: Settings) -> None:
    config = TaskEmitConfig(listeners=[confirm_order], crons=[cron("@daily", "nobody_listens")], settings=settings)
    with pytest.raises(CronConfigError, match="nobody_listens"):
        Litestar([], plugins=[TaskEmitPlugin(config)])


def test_configuration_errors(settings: Settings) -> None:
    with pytest.raises(ImproperlyConfiguredException, match="guards"):
        TaskEmitConfig(dashboard_path="/taskemit")
    with pytest.raises(ImproperlyConfiguredException, match="below"):
        TaskEmitConfig(dashboard_path="/", guards=[])
    with pytest.raises(ImproperlyConfiguredException, match="identifier"):
        TaskEmitConfig(emitter_dependency_key="my-emitter")
    assert TaskEmitConfig(dashboard_path="taskemit/", guards=[]).dashboard_path == "/taskemit"
    # the dashboard's buttons need CSRF protection: the app's csrf_config, or a secret of its own
    with pytest.raises(ImproperlyConfiguredException, match="CSRF"):
        Litestar([], plugins=[TaskEmitPlugin(TaskEmitConfig(settings=settings, dashboard_path="/te", guards=[]))])

    class OtherBackend(SimpleEventEmitter):
        pass

    with pytest.raises(ImproperlyConfiguredException, match="OtherBackend"):
        Litestar([], event_emitter_backend=OtherBackend, plugins=[TaskEmitPlugin(TaskEmitConfig(settings=settings))])
    # ArqEventEmitter given by hand as well is fine: the plugin puts its configured subclass in
    app = Litestar(
        [], event_emitter_backend=ArqEventEmitter, plugins=[TaskEmitPlugin(TaskEmitConfig(settings=settings))]
    )
    assert isinstance(app.event_emitter, ArqEventEmitter)


def test_settings_environment_round_trips(settings: Settings) -> None:
    custom = settings.model_copy(
        update={
            "max_tries": 3,
            "drain_on_exit": True,
            "listeners": ["a.b", "c"],
            "backoff": {"kind": "exponential", "first": 2.0, "factor": 3.0, "cap": 60.0, "jitter": "full"},
        }
    )
    env = settings_environment(custom)
    assert env["TASKEMIT_REDIS_URL"] == settings.redis_url and env["TASKEMIT_LISTENERS"] == "a.b,c"
    assert "TASKEMIT_QUEUE_NAME" not in env  # defaults are left to the defaults
    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in os.environ if n.startswith("TASKEMIT_")]:
            mp.delenv(name)
        for name, value in env.items():
            mp.setenv(name, value)
        assert load_settings() == custom


@pytest.fixture
def restore_environ() -> Iterator[None]:
    """The CLI group writes TASKEMIT_* into the environment, as the taskemit command's options do."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


async def test_the_cli_group_runs_taskemit_commands_on_the_apps_settings(
    settings: Settings, restore_environ: None
) -> None:
    plugin = TaskEmitPlugin(TaskEmitConfig(listeners=[confirm_order], settings=settings))
    app = Litestar([place_order], plugins=[plugin])
    async with AsyncTestClient(app) as client:
        event = (await client.post("/orders/3")).json()["event"]
    os.environ.pop("TASKEMIT_REDIS_URL", None)
    os.environ.pop("TASKEMIT_NAMESPACE", None)
    root = click.Group("litestar")
    plugin.on_cli_init(root)
    group = root.commands["taskemit"]
    from taskemit.cli import cli as taskemit_cli

    assert group.commands is taskemit_cli.commands  # the very same commands, not copies
    result = await asyncio.to_thread(CliRunner().invoke, root, ["taskemit", "events", "--json"])
    assert result.exit_code == 0, result.output
    assert [item["event_uuid"] for item in json.loads(result.output)["items"]] == [event]
    assert os.environ["TASKEMIT_LISTENERS"] == "test_plugin"  # `worker` without a target runs these


def test_litestar_command_has_the_taskemit_group(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "shopapp.py").write_text(
        textwrap.dedent(
            f"""
            from litestar import Litestar
            from taskemit import listener, load_settings
            from taskemit.litestar import TaskEmitConfig, TaskEmitPlugin

            @listener("order_placed")
            async def confirm(order_id: int) -> None: ...

            settings = load_settings(redis_url={settings.redis_url!r}, namespace={settings.namespace!r})
            app = Litestar([], plugins=[TaskEmitPlugin(TaskEmitConfig(listeners=[confirm], settings=settings))])
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKEMIT_", "LITESTAR_"))}
    command = [sys.executable, "-m", "litestar", "--app", "shopapp:app", "taskemit", "stats", "--json"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["queue"]["queue"] == "default"
    help_text = subprocess.run(
        [sys.executable, "-m", "litestar", "--app", "shopapp:app", "taskemit", "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    for command_name in ("worker", "events", "status", "dead", "stats", "workers", "abort", "cron"):
        assert command_name in help_text
