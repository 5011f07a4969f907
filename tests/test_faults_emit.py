"""Every error reply to an emit has a defined outcome: nothing accepted is lost, nothing stored twice.

Each test makes a real redis-server answer the way production Redis does under that fault (out of
memory, a replica, loading, busy with a script, short of replicas, a lost script cache, a key of
the wrong type), emits through it, ends the fault, and counts what Redis holds.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from proxy import TcpProxy
from redis.backoff import NoBackoff
from redis.retry import Retry
from topology import replica_of, server_version, wait_until

from taskemit import Emitter, listener
from taskemit.emit.fanout import Fanout
from taskemit.emit.spool import Spool
from taskemit.settings import Settings, load_settings
from taskemit.store.redis_server import RedisServer, find_redis_server

EVENTS = 40


@listener("fault_probe")
async def on_probe(n: int) -> None: ...


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as started:
        yield started


def settings_for(url: str, tmp_path: Path, **more: Any) -> Settings:
    return load_settings(
        redis_url=url, namespace="faults", spool_dir=str(tmp_path / "spool"), publish_timeout=2.0, **more
    )


def stored(client: redis.Redis, settings: Settings) -> tuple[int, int]:
    """(events recorded, jobs queued) in Redis."""
    return int(client.zcard(settings.keys.events)), int(client.zcard(settings.queue_key))


def emit_all(emitter: Emitter, count: int = EVENTS) -> None:
    for n in range(count):
        emitter.emit("fault_probe", n)


async def stored_soon(client: redis.Redis, settings: Settings, count: int = EVENTS, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    seen: tuple[int, int] | None = None
    while seen != (count, count):
        assert time.monotonic() < deadline, f"stored {seen}, expected {(count, count)}"
        await asyncio.sleep(0.05)
        try:
            seen = stored(client, settings)
        except redis.BusyLoadingError:  # the server still loads: ask again
            seen = None


async def nothing_stored_for(client: redis.Redis, settings: Settings, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert stored(client, settings) == (0, 0), "stored while the fault lasted"
        await asyncio.sleep(0.05)


async def test_out_of_memory_holds_the_events_until_there_is_room(server: RedisServer, tmp_path: Path) -> None:
    settings = settings_for(server.url, tmp_path)
    client = redis.Redis(port=server.port)
    async with Emitter([on_probe], settings) as emitter:
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", int(client.info("memory")["used_memory"]) - 1024)
        emit_all(emitter)
        await nothing_stored_for(client, settings, 1.0)  # every batch got OOM and waits
        client.config_set("maxmemory", 0)
        await stored_soon(client, settings)


async def test_a_demoted_primary_is_left_for_the_new_one(server: RedisServer, tmp_path: Path) -> None:
    """A managed endpoint's failover: the old primary answers READONLY on the open connections,
    while the name (here, the proxy) already points at the new primary."""
    with RedisServer() as other, TcpProxy(server.port) as endpoint:
        settings = settings_for(f"redis://127.0.0.1:{endpoint.port}/0", tmp_path)
        new_primary = redis.Redis(port=other.port)
        async with Emitter([on_probe], settings) as emitter:
            emitter.emit("fault_probe", -1)  # the emitter's connections are open now
            await stored_soon(redis.Redis(port=server.port), settings, 1)
            redis.Redis(port=server.port).replicaof("127.0.0.1", other.port)  # demoted: READONLY
            endpoint.retarget(other.port)
            emit_all(emitter)
            await stored_soon(new_primary, settings)


async def test_a_replica_that_lost_its_primary_is_waited_out(server: RedisServer, tmp_path: Path) -> None:
    primary = RedisServer().start()
    replica = replica_of(primary, "--replica-serve-stale-data", "no")
    try:
        settings = settings_for(replica.url, tmp_path)
        client = redis.Redis(port=replica.port)
        async with Emitter([on_probe], settings) as emitter:
            primary.stop()
            wait_until(lambda: client.info("replication")["master_link_status"] == "down")
            emit_all(emitter)  # MASTERDOWN, then READONLY
            await asyncio.sleep(1.0)
            client.replicaof("no", "one")  # promoted
            await stored_soon(client, settings)
    finally:
        replica.stop()
        primary.stop()


async def test_a_server_still_loading_its_data_is_waited_out(tmp_path: Path) -> None:
    # about 2 s to load 40,000 keys (10 MB: uncompressed), answering clients (LOADING) every 2 MB
    binary = find_redis_server()
    # Redis 7 refuses DEBUG unless allowed (6.x knows no such option)
    debug = ["--enable-debug-command", "local"] if server_version(binary) >= (7,) else []
    server = RedisServer(binary=binary, extra_args=["--key-load-delay", "50", "--rdbcompression", "no", *debug]).start()
    try:
        client = redis.Redis(port=server.port)
        client.execute_command("DEBUG", "POPULATE", 40_000, "filler", 256)
        client.save()
        server.stop()  # SIGKILL: the next start loads dump.rdb
        starting = threading.Thread(target=server.start)
        starting.start()
        settings = settings_for(server.url, tmp_path)
        wait_until(lambda: _loading(server.port), what="the server to be loading")
        async with Emitter([on_probe], settings) as emitter:
            emit_all(emitter)
            await stored_soon(client, settings)
        starting.join()
    finally:
        server.stop()


def _loading(port: int) -> bool:
    try:
        # no retries (redis-py 6 and newer retry a LOADING reply by default, so it would never see one)
        with redis.Redis(port=port, socket_timeout=5, retry=Retry(NoBackoff(), 0)) as client:  # it answers per 2 MB
            client.get("probe")  # PING is answered while loading; GET is refused
    except redis.BusyLoadingError:
        return True
    return False


async def test_a_server_busy_with_a_long_script_is_waited_out(server: RedisServer, tmp_path: Path) -> None:
    settings = settings_for(server.url, tmp_path)
    client = redis.Redis(port=server.port)
    client.config_set("lua-time-limit", 100)
    async with Emitter([on_probe], settings) as emitter:
        emitter.emit("fault_probe", -1)
        await stored_soon(client, settings, 1)
        client.delete(*client.keys("*"))
        busy = threading.Thread(target=_spin, args=(server.port,))
        busy.start()
        wait_until(lambda: _busy(server.port), what="the script to run")
        emit_all(emitter)  # BUSY (even reading is refused until the script ends)
        await asyncio.sleep(1.0)
        redis.Redis(port=server.port).script_kill()
        busy.join()
        await stored_soon(client, settings)


def _spin(port: int) -> None:
    with redis.Redis(port=port) as client, pytest.raises(redis.ResponseError):
        client.eval("while true do end", 0)


def _busy(port: int) -> bool:
    try:
        redis.Redis(port=port, socket_timeout=1).ping()
    except redis.ResponseError as exc:
        return "BUSY" in str(exc)
    return False


async def test_too_few_replicas_to_write_is_waited_out(server: RedisServer, tmp_path: Path) -> None:
    settings = settings_for(server.url, tmp_path)
    client = redis.Redis(port=server.port)
    async with Emitter([on_probe], settings) as emitter:
        client.config_set("min-replicas-to-write", 1)  # NOREPLICAS
        emit_all(emitter)
        await nothing_stored_for(client, settings, 1.0)
        client.config_set("min-replicas-to-write", 0)
        await stored_soon(client, settings)


async def test_a_flushed_script_cache_is_loaded_again(server: RedisServer, tmp_path: Path) -> None:
    settings = settings_for(server.url, tmp_path)
    client = redis.Redis(port=server.port)
    async with Emitter([on_probe], settings) as emitter:
        client.script_flush()  # NOSCRIPT
        emit_all(emitter)
        await stored_soon(client, settings)


async def test_a_lost_reply_stores_nothing_twice(server: RedisServer, tmp_path: Path) -> None:
    """The batch ran, its reply was lost, the batch is sent again: one event, one job each."""
    with TcpProxy(server.port) as endpoint:
        settings = settings_for(f"redis://127.0.0.1:{endpoint.port}/0", tmp_path)
        client = redis.Redis(port=server.port)
        async with Emitter([on_probe], settings) as emitter:
            await emitter.publish("fault_probe", -1)  # connected
            client.delete(*client.keys("*"))
            endpoint.lose_next_reply()
            receipt = await emitter.publish("fault_probe", 1)  # stored, reply lost, sent again
            assert receipt is not None
            emit_all(emitter)
            await stored_soon(client, settings, EVENTS + 1)
            assert endpoint.connections >= 2  # the reply really was lost: it reconnected
            (job_id,) = receipt.jobs.values()
            assert client.zscore(settings.queue_key, job_id) is not None
            # the event was counted once: the batch sent again stored nothing
            assert int(client.hget(settings.keys.event_counts, "fault_probe") or 0) == EVENTS + 1


async def test_an_event_redis_refuses_is_parked_with_the_error_then_stored(server: RedisServer, tmp_path: Path) -> None:
    settings = settings_for(server.url, tmp_path)
    client = redis.Redis(port=server.port)
    async with Emitter([on_probe], settings) as emitter:
        client.set(settings.keys.events, "not a sorted set")  # WRONGTYPE for every event's index entry
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            await emitter.publish("fault_probe", 7)
        emit_all(emitter, 5)
        spool = Spool(settings)
        await _until(lambda: len(spool.parked()) == 6)
        assert all("WRONGTYPE" in error for _, error, _ in spool.parked())
        # nothing half-stored: no record, no payload, nothing queued
        assert client.keys(settings.keys.event("*")) == [] and client.zcard(settings.queue_key) == 0
        assert client.keys("arq:job:*") == []
        client.delete(settings.keys.events)
        assert spool.unpark() == 6
        await emitter.flush_spool(timeout=10)
        assert stored(client, settings) == (6, 6) and spool.parked() == []


async def _until(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {check}"
        await asyncio.sleep(0.05)


async def test_an_emit_racing_the_close_is_stored_or_refused(
    server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An emit from another thread that passed the emitter's checks while it closed: it raises, or
    it is stored; it never is accepted and then dropped."""
    settings = settings_for(server.url, tmp_path)
    emitter = Emitter([on_probe], settings)
    await emitter.__aenter__()
    prepared, release = threading.Event(), threading.Event()
    prepare = Fanout.prepare

    def slow_prepare(self: Fanout, *args: Any) -> Any:
        pending = prepare(self, *args)
        if threading.current_thread().name == "late-emit":  # held between its checks and the buffer
            prepared.set()
            release.wait(10)
        return pending

    monkeypatch.setattr(Fanout, "prepare", slow_prepare)
    outcome: list[str] = []

    def late_emit() -> None:
        try:
            emitter.emit("fault_probe", 1)
        except Exception as exc:
            outcome.append(type(exc).__name__)
        else:
            outcome.append("accepted")

    thread = threading.Thread(target=late_emit, name="late-emit")
    thread.start()
    assert prepared.wait(10)
    await emitter.__aexit__(None, None, None)  # the flusher finds nothing left and ends
    release.set()
    thread.join(10)
    client = redis.Redis(port=server.port)
    await asyncio.sleep(0.2)
    if outcome == ["accepted"]:
        assert stored(client, settings) == (1, 1), "accepted, then lost"
    else:
        assert outcome == ["StateError"] and stored(client, settings) == (0, 0)
