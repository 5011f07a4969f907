"""Flow control read back: monitor.flow_states, `taskemit listeners` and `taskemit stats` (tables
and JSON), `taskemit emit --priority --ordering-key`, and the taskemit_flow_* gauges."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client import generate_latest
from redis import asyncio as aioredis

from taskemit import Emitter, listener
from taskemit.cli import cli
from taskemit.monitor import flow_states
from taskemit.monitor.catalog import read_catalog
from taskemit.monitor.metrics import metrics_registry
from taskemit.settings import Settings
from taskemit.testing import InProcessWorker

release = threading.Event()


@listener("sync_order", name="crm:sync", concurrency=2, ordered_by="order_id")
async def sync_order(order_id: str) -> None:
    await asyncio.to_thread(release.wait, 20)


@listener("ping", name="crm:ping", rate="2/s")
async def ping(n: int) -> None: ...


@pytest.fixture
def env(taskemit_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("TASKEMIT_REDIS_URL", taskemit_settings.redis_url)
    monkeypatch.setenv("TASKEMIT_NAMESPACE", taskemit_settings.namespace)
    release.clear()
    return taskemit_settings.model_copy(update={"drain_on_exit": False})


async def cli_run(*args: str) -> Any:
    result = await asyncio.to_thread(CliRunner().invoke, cli, list(args))
    assert result.exit_code == 0, result.output
    return result


async def test_what_is_in_use_and_what_waits(env: Settings, redis: aioredis.Redis) -> None:
    async with Emitter([sync_order, ping], env) as emitter:
        for order in ("A", "A", "A", "B", "C"):
            emitter.emit("sync_order", order_id=order)
        for n in range(3):
            emitter.emit("ping", n=n)
    try:
        async with InProcessWorker([sync_order, ping], env):
            deadline = time.monotonic() + 10
            while True:
                catalog = await read_catalog(redis, space=env.keys)
                queues = {name: env.queue_key for name in catalog}
                states = await flow_states(
                    redis, space=env.keys, queues=queues, declared={n: e.flow for n, e in catalog.items()}
                )
                orders = states.get(sync_order.name)
                tokens = states[ping.name].tokens if ping.name in states else None
                if orders is not None and orders.running == 2 and tokens is not None and tokens < 1:
                    break
                assert time.monotonic() < deadline, states
                await asyncio.sleep(0.05)
            # two of the three keys' first jobs hold both slots; the third waits for one; A's other two
            # wait behind their key
            assert (orders.ready, orders.behind_keys, orders.waiting, orders.keys) == (1, 2, 3, 3)
            assert orders.busiest[0] == ("A", 3)
            assert orders.in_use().startswith("2/2 running") and "3 keys (A: 3" in orders.in_use()
            pinged = states[ping.name]
            assert pinged.next_token_at is not None and pinged.next_token_at > time.time() - 0.1

            shown = json.loads((await cli_run("listeners", "--json")).output)
            flow = {view["listener"]: view["flow"] for view in shown}
            assert flow[sync_order.name]["limits"] == "2 at once, ordered by order_id"
            assert flow[sync_order.name]["running"] == 2 and flow[sync_order.name]["behind_keys"] == 2
            table = (await cli_run("listeners")).output
            assert "2 at once, ordered" in table and "2/2 running" in table

            stats = json.loads((await cli_run("stats", "--json")).output)
            assert {f["listener"] for f in stats["flow"]} == {sync_order.name, ping.name}
            assert "Flow control" in (await cli_run("stats")).output

            exposition = generate_latest(metrics_registry(env)).decode()
            assert f'taskemit_flow_concurrency_limit{{listener="{sync_order.name}"}} 2.0' in exposition
            assert f'taskemit_flow_running{{listener="{sync_order.name}"}} 2.0' in exposition
            assert f'taskemit_flow_waiting_behind_keys{{listener="{sync_order.name}"}} 2.0' in exposition
            assert f'taskemit_flow_rate_per_second{{listener="{ping.name}"}} 2.0' in exposition
            assert f'taskemit_flow_next_token_seconds{{listener="{ping.name}"}}' in exposition
            release.set()
    finally:
        release.set()


async def test_taskemit_emit_takes_a_priority_and_an_ordering_key(env: Settings, redis: aioredis.Redis) -> None:
    async with InProcessWorker([sync_order], env):
        deadline = time.monotonic() + 10
        while sync_order.name not in await read_catalog(redis, space=env.keys):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        result = await cli_run(
            "emit", "sync_order", "--data", '{"order_id": "Z"}', "--priority", "7", "--ordering-key", "batch-1"
        )
        assert "1 jobs" in result.output
        records = await redis.hgetall(env.keys.flow_jobs(sync_order.name))
        assert [value.decode() for value in records.values()] == ["420000\nO\nbatch-1\n"]  # 7 x 60 s; the key given
        bad = await asyncio.to_thread(
            CliRunner().invoke, cli, ["emit", "sync_order", "--data", '{"order_id": "Z"}', "--priority", "101"]
        )
        assert bad.exit_code == 2 and "101" in bad.output
        release.set()
