"""nameko's delivery on taskemit: broadcast and singleton listeners, unreliable delivery, and a
dispatcher that fans out from the listener catalog without importing the handlers' code.

The broadcast and singleton tests run real worker processes (tests/mode_listeners.py, which
this module never imports); the rest run in-process workers. Real Redis throughout.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from children import TESTS, child_env, served_by, stop
from click.testing import CliRunner
from redis import asyncio as aioredis
from typed_events import UserCreated, UserEvent

from taskemit import Emitter, listener
from taskemit.cli import cli
from taskemit.engine import InProcessWorker
from taskemit.errors import ListenerArgumentError, UnknownEventError
from taskemit.monitor import event_status
from taskemit.monitor.catalog import read_catalog
from taskemit.monitor.workers import listener_views
from taskemit.settings import Settings

runs: list[Any] = []


@pytest.fixture(autouse=True)
def _reset() -> None:
    runs.clear()


@pytest.fixture
def settings(taskemit_settings: Settings) -> Settings:
    return taskemit_settings.model_copy(update={"drain_on_exit": False, "catalog_refresh": 0.1})


def start_worker(settings: Settings) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "taskemit", "worker", "mode_listeners:Workers"],
        env=child_env(settings),
        cwd=TESTS,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


async def recorded(redis: aioredis.Redis, key: str, count: int, timeout: float = 20) -> list[list[str]]:
    deadline = time.monotonic() + timeout
    while (n := await redis.llen(key)) < count:
        assert time.monotonic() < deadline, f"{key}: {n} of {count} after {timeout}s"
        await asyncio.sleep(0.05)
    return [item.decode().split(":") for item in await redis.lrange(key, 0, -1)]


@pytest.fixture
def workers(settings: Settings) -> Iterator[list[subprocess.Popen[bytes]]]:
    children = [start_worker(settings) for _ in range(3)]
    try:
        yield children
    finally:
        stop(*children)


async def test_broadcast_runs_once_in_every_live_worker_and_never_later(
    settings: Settings, redis: aioredis.Redis, workers: list[subprocess.Popen[bytes]]
) -> None:
    await served_by(redis, settings, "cache.drop", 3)
    async with Emitter(settings=settings) as dispatcher:  # no listeners: the catalog's
        first = await dispatcher.publish("config_changed", version=1)
        second = await dispatcher.publish("config_changed", version=2)
        assert first is not None and second is not None and len(first.jobs) == 3
        runs_ = await recorded(redis, "runs:broadcast", 6)
        pids = {child.pid for child in workers}
        for receipt, version in ((first, "1"), (second, "2")):
            ran = [pid for v, uuid, pid in runs_ if uuid == receipt.event_uuid]
            assert {int(pid) for pid in ran} == pids and len(ran) == 3  # once in each worker
            assert {v for v, uuid, _ in runs_ if uuid == receipt.event_uuid} == {version}
        status = await event_status(redis, settings, first.event_uuid)
        assert status is not None and [job.status for job in status.jobs] == ["complete"] * 3
        # a worker that was not running at emit time does not get the event later
        late = start_worker(settings)
        try:
            await served_by(redis, settings, "cache.drop", 4)
            await asyncio.sleep(1.0)
            assert await redis.llen("runs:broadcast") == 6
            third = await dispatcher.publish("config_changed", version=3)
            assert third is not None and len(third.jobs) == 4
            runs_ = await recorded(redis, "runs:broadcast", 10)
            assert late.pid in {int(pid) for _, uuid, pid in runs_ if uuid == third.event_uuid}
        finally:
            stop(late)


async def test_singleton_listeners_handle_each_event_exactly_once(
    settings: Settings, redis: aioredis.Redis, workers: list[subprocess.Popen[bytes]]
) -> None:
    await served_by(redis, settings, "single.a", 3)
    await served_by(redis, settings, "single.b", 3)
    async with Emitter(settings=settings) as dispatcher:
        receipts = [await dispatcher.publish("job_ready", n=n) for n in range(10)]
        assert all(receipt is not None and len(receipt.jobs) == 1 for receipt in receipts)
        runs_ = await recorded(redis, "runs:singleton", 10)
        await asyncio.sleep(1.0)  # nothing more comes
        runs_ = await recorded(redis, "runs:singleton", 10)
    assert len(runs_) == 10
    assert sorted(int(n) for n, *_ in runs_) == list(range(10))
    assert {uuid for _, uuid, *_ in runs_} == {receipt.event_uuid for receipt in receipts if receipt}
    assert {name for _, _, name, _ in runs_} == {"a", "b"}  # spread over both listeners


async def test_a_dispatcher_checks_arguments_and_routes_typed_events_from_the_catalog(
    settings: Settings, redis: aioredis.Redis, workers: list[subprocess.Popen[bytes]]
) -> None:
    await served_by(redis, settings, "ops.ping", 1)
    await served_by(redis, settings, "users.welcome", 1)
    async with Emitter(settings=settings) as dispatcher:
        with pytest.raises(ListenerArgumentError, match=r"ops\.ping"):
            dispatcher.emit("ping", hots="typo")
        with pytest.raises(UnknownEventError):
            dispatcher.emit("nobody_listens")
        dispatcher.emit("ping", host="db1", count=2)
        dispatcher.emit(UserCreated(user=1, email="a@b"))  # routed by class path, decoded in the worker
        assert await recorded(redis, "runs:ping", 1) == [["db1", "2"]]
        assert await recorded(redis, "runs:welcome", 1) == [["UserCreated", "a@b"]]
    catalog = await read_catalog(redis, space=settings.keys)
    assert catalog["ops.ping"].params == (("host", 1, False), ("count", 1, True))
    assert catalog["users.welcome"].typed and catalog["users.welcome"].events == ("typed_events:UserCreated",)
    assert catalog["cache.drop"].mode == "broadcast"
    await served_by(redis, settings, "cache.drop", 3)  # the three workers have all started
    where = ["--redis-url", settings.redis_url, "--namespace", settings.namespace]
    listed = await asyncio.to_thread(CliRunner().invoke, cli, [*where, "listeners", "--json"])
    assert listed.exit_code == 0, listed.output
    by_name = {view["listener"]: view for view in json.loads(listed.output)}
    assert by_name["cache.drop"]["mode"] == "broadcast" and by_name["cache.drop"]["workers"] == 3
    assert by_name["users.welcome"]["events"] == ["typed_events:UserCreated"]


# -- in-process ------------------------------------------------------------------------------------


@listener("beacon", reliable_delivery=False)
async def beacon(n: int) -> None:
    runs.append(("beacon", n))


@listener("beacon")
async def keeper(n: int) -> None:
    runs.append(("keeper", n))


@listener()
async def any_user(event: UserEvent) -> None:
    runs.append(("user", event))


async def test_unreliable_delivery_drops_events_no_live_worker_would_take(
    settings: Settings, redis: aioredis.Redis
) -> None:
    async with Emitter([beacon, keeper], settings) as emitter:
        dropped = await emitter.publish("beacon", 1)
        assert dropped is not None and list(dropped.jobs) == [keeper.name]  # the reliable one still queues
        async with InProcessWorker([beacon, keeper], settings):
            await served_by(redis, settings, beacon.name, 1)
            await asyncio.sleep(0.3)  # the emitter's catalog view sees the worker
            kept = await emitter.publish("beacon", 2)
            assert kept is not None and set(kept.jobs) == {beacon.name, keeper.name}
            deadline = time.monotonic() + 10
            while len(runs) < 3:
                assert time.monotonic() < deadline, runs
                await asyncio.sleep(0.02)
    assert sorted(runs) == [("beacon", 2), ("keeper", 1), ("keeper", 2)]


async def test_the_catalog_follows_the_workers(settings: Settings, redis: aioredis.Redis) -> None:
    assert await read_catalog(redis, space=settings.keys) == {}
    async with InProcessWorker([beacon, any_user], settings) as worker:
        await served_by(redis, settings, any_user.name, 1)
        catalog = await read_catalog(redis, space=settings.keys)
        assert catalog[any_user.name].workers == (worker.worker_id,)
        assert catalog[any_user.name].events == ("typed_events:UserEvent",)
        assert catalog[any_user.name].queue == "default"  # where dispatchers send its jobs
        views = {view.listener: view for view in await listener_views(redis, space=settings.keys)}
        assert (views[beacon.name].mode, views[beacon.name].events) == ("pool", ("beacon",))
        assert views[any_user.name].workers == 1 and views[any_user.name].queue == "default"
        assert catalog[beacon.name].reliable is False and catalog[beacon.name].params == (("n", 1, False),)
        # a registration lives three heartbeats unless renewed
        later = await read_catalog(redis, space=settings.keys, now=time.time() + 16)
        assert later[any_user.name].workers == ()
    catalog = await read_catalog(redis, space=settings.keys)
    assert catalog[any_user.name].workers == ()  # a clean stop unregisters at once; the description stays
    async with Emitter(settings=settings) as dispatcher:  # reliable: queued for the next worker
        receipt = await dispatcher.publish(UserEvent(user=5))
        assert receipt is not None and list(receipt.jobs) == [any_user.name]
        status = await event_status(redis, settings, receipt.event_uuid)
        assert status is not None and status.jobs[0].note == f"waiting: no live worker serves listener {any_user.name}"


@listener("flush_cache", mode="broadcast")
async def slow_flush() -> None:
    runs.append("flush")
    await asyncio.sleep(8)


async def test_a_workers_broadcast_queue_expires_unless_the_worker_lives(
    settings: Settings, redis: aioredis.Redis
) -> None:
    short = settings.model_copy(update={"job_expiry": 120})
    async with InProcessWorker([slow_flush], short, grace=0) as worker:
        await served_by(redis, short, slow_flush.name, 1)
        async with Emitter([slow_flush], short) as emitter:
            await asyncio.sleep(0.3)  # its view of the catalog has the worker
            receipt = await emitter.publish("flush_cache")
        assert receipt is not None and list(receipt.jobs) == [f"{slow_flush.name}@{worker.worker_id}"]
        queue = short.keys.broadcast_queue(short.queue_key, worker.worker_id)
        assert 0 < await redis.pttl(queue) <= 120_000  # set by the emit
        deadline = time.monotonic() + 10
        leased = short.keys.leased(queue, slow_flush.name)
        while not (runs == ["flush"] and 0 < await redis.pttl(leased) <= 120_000):  # renewed by its heartbeats
            assert time.monotonic() < deadline, (runs, await redis.pttl(leased))
            await asyncio.sleep(0.1)
