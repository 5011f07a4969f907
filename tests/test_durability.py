"""Durability levels with real replicas: ``publish`` returns once the level holds and raises
NotDurable (keeping the event) when it cannot; workers start a job only once its claim is on the
replicas; ``fsync`` needs a server that has WAITAOF and an append-only file."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from topology import replica_of, server_binary

from taskemit import DurabilityUnavailable, Emitter, NotDurable, listener
from taskemit.emit.spool import Spool
from taskemit.engine import InProcessWorker
from taskemit.settings import Settings, load_settings
from taskemit.store.redis_server import RedisServer

ran: list[float] = []


@listener("durable_probe")
async def probe(n: int) -> None:
    ran.append(time.monotonic())


@pytest.fixture(autouse=True)
def _fresh() -> None:
    ran.clear()


@pytest.fixture
def primary() -> Iterator[RedisServer]:
    with RedisServer() as started:
        yield started


def settings_for(server: RedisServer, tmp_path: Path, **more: Any) -> Settings:
    options: dict[str, Any] = {
        "redis_url": server.url,
        "namespace": "durable",
        "spool_dir": str(tmp_path / "spool"),
        "durability": "replicated",
        "min_replicas": 1,
        "publish_timeout": 1.5,
        "durability_timeout": 0.3,
        "lease_ttl": 3.0,
        **more,
    }
    return load_settings(**options)


async def until(check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {check}"
        await asyncio.sleep(0.05)


async def test_publish_returns_once_a_replica_has_the_event_and_keeps_it_when_none_does(
    primary: RedisServer, tmp_path: Path
) -> None:
    settings = settings_for(primary, tmp_path)
    replica = replica_of(primary)
    try:
        async with Emitter([probe], settings) as emitter:
            receipt = await emitter.publish("durable_probe", 1)
            assert receipt is not None
            assert redis.Redis(port=replica.port).exists(settings.keys.event(receipt.event_uuid))
            replica.stop()
            started = time.monotonic()
            with pytest.raises(NotDurable, match="durability 'replicated' did not hold"):
                await emitter.publish("durable_probe", 2)
            assert time.monotonic() - started < settings.publish_timeout + 1
            spool = Spool(settings)
            assert spool.count() == 1  # stored on the primary, kept until a replica has it
            assert redis.Redis(port=primary.port).zcard(settings.keys.events) == 2
            # a publish that asks for less returns at once
            assert await emitter.publish("durable_probe", 3, durability="memory") is not None
            replica = replica_of(primary)
            await until(lambda: spool.count() == 0)
            assert redis.Redis(port=replica.port).zcard(settings.keys.events) == 3
    finally:
        replica.stop()


async def test_a_worker_starts_a_job_only_once_its_claim_is_on_a_replica(primary: RedisServer, tmp_path: Path) -> None:
    settings = settings_for(primary, tmp_path)
    async with Emitter([probe], settings) as emitter:
        await emitter.publish("durable_probe", 1, durability="memory")  # no replica yet
    async with InProcessWorker([probe], settings):
        await asyncio.sleep(1.5)
        assert ran == []  # claimed, but not on any replica: not started
        replica = replica_of(primary)
        try:
            await until(lambda: len(ran) == 1)
        finally:
            replica.stop()


async def test_fsync_waits_for_the_append_only_file(tmp_path: Path) -> None:
    binary = server_binary((7, 2), "for WAITAOF")
    with RedisServer(binary=binary, extra_args=["--appendonly", "yes", "--appendfsync", "always"]) as server:
        settings = settings_for(server, tmp_path, durability="fsync", min_replicas=0)
        async with Emitter([probe], settings) as emitter:
            assert await emitter.publish("durable_probe", 1) is not None
        redis.Redis(port=server.port).config_set("appendonly", "no")
        with pytest.raises(DurabilityUnavailable, match="appendonly"):
            async with Emitter([probe], settings):
                pass


async def test_fsync_on_a_server_without_waitaof_is_refused_at_start(tmp_path: Path) -> None:
    with RedisServer() as server:
        version = redis.Redis(port=server.port).info("server")["redis_version"]
        if tuple(int(p) for p in version.split(".")[:2]) >= (7, 2):
            pytest.skip(f"the redis-server found ({version}) has WAITAOF")
        settings = settings_for(server, tmp_path, durability="fsync", min_replicas=0)
        with pytest.raises(DurabilityUnavailable, match=r"needs Redis 7\.2 or newer"):
            async with Emitter([probe], settings):
                pass


def test_replicated_needs_a_replica() -> None:
    with pytest.raises(ValueError, match='durability = "replicated" needs min_replicas >= 1'):
        load_settings(durability="replicated", min_replicas=0)
