"""Emitter: emit stores one arq job per listener, atomically with the event record."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from arq_support import HAVE_ARQ, needs_arq
from redis import asyncio as aioredis

from taskemit import (
    EmitBufferFull,
    Emitter,
    ListenerArgumentError,
    PayloadEncodeError,
    PayloadTooLarge,
    TaskEmitError,
    UnknownEventError,
    listener,
)
from taskemit.monitor import event_status
from taskemit.settings import Settings
from taskemit.store.codec import META_KWARG, get_codec

if HAVE_ARQ:
    from arq.jobs import Job, JobStatus

received: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []


@listener("user_created")
async def welcome(email: str) -> None:
    received.append(("welcome", (email,), {}))


@listener("user_created", "password_changed")
async def send_email(email: str, message: str = "") -> None:
    received.append(("send_email", (email,), {"message": message}))


@listener("user_deleted")
async def farewell(email: str, **kwargs: Any) -> None:
    received.append(("farewell", (email,), kwargs))


@listener("user_deleted")
async def support_strict(reason: str) -> None:
    received.append(("support", (reason,), {}))


LISTENERS = [welcome, send_email, farewell]


@pytest.fixture(autouse=True)
def _clear() -> None:
    received.clear()


def no_drain(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update={"drain_on_exit": False, **changes})


async def job_ids_in_queue(redis: aioredis.Redis, settings: Settings) -> list[str]:
    return [m.decode() for m in await redis.zrange(settings.queue_key, 0, -1)]


async def test_publish_stores_one_arq_job_per_listener(taskemit_settings: Settings, redis: aioredis.Redis) -> None:
    settings = no_drain(taskemit_settings)
    async with Emitter(LISTENERS, settings) as emitter:
        receipt = await emitter.publish("user_created", email="ada@example.com")
    assert receipt is not None
    assert set(receipt.jobs) == {welcome.name, send_email.name}
    assert sorted(await job_ids_in_queue(redis, settings)) == sorted(receipt.jobs.values())
    codec = get_codec("json")
    for name, job_id in receipt.jobs.items():
        job = codec.decode_job(await redis.get(settings.keys.job(job_id)))  # arq's format: test_arq_format.py
        assert (job["f"], job["a"], job["t"]) == (name, [], None)
        assert job["k"] == {
            "email": "ada@example.com",
            META_KWARG: {"event": receipt.event_uuid, "event_id": "user_created"},
        }
    record = await event_status(redis, settings, receipt.event_uuid)
    assert record is not None and record.event_id == "user_created"
    assert {job.job_id for job in record.jobs} == set(receipt.jobs.values())
    assert all(job.status == "queued" for job in record.jobs)
    assert 0 < await redis.ttl(settings.keys.event(receipt.event_uuid)) <= settings.event_retention
    assert await redis.zscore(settings.keys.events, receipt.event_uuid) is not None


@needs_arq
async def test_arqs_job_api_reads_a_published_job(taskemit_settings: Settings, redis: aioredis.Redis) -> None:
    settings = no_drain(taskemit_settings)
    async with Emitter(LISTENERS, settings) as emitter:
        receipt = await emitter.publish("user_created", email="ada@example.com")
    assert receipt is not None
    codec = get_codec("json")
    for name, job_id in receipt.jobs.items():
        # arq's own Job API reads the job: the wire format is arq's
        info = await Job(job_id, redis, _queue_name=settings.queue_key, _deserializer=codec.loads).info()
        assert info is not None
        assert info.function == name
        assert list(info.args) == []
        assert info.kwargs["email"] == "ada@example.com"
        assert info.kwargs[META_KWARG] == {"event": receipt.event_uuid, "event_id": "user_created"}
        assert await Job(job_id, redis, _queue_name=settings.queue_key).status() == JobStatus.queued


async def test_emit_is_flushed_on_exit(taskemit_settings: Settings, redis: aioredis.Redis) -> None:
    settings = no_drain(taskemit_settings)
    async with Emitter(LISTENERS, settings) as emitter:
        for n in range(300):
            emitter.emit("password_changed", email=f"u{n}@example.com", message="x")
    # nothing is lost on a clean shutdown: every emit is in Redis once __aexit__ returns
    assert len(await job_ids_in_queue(redis, settings)) == 300


async def test_emit_does_not_wait_for_redis(taskemit_settings: Settings, redis: aioredis.Redis) -> None:
    settings = no_drain(taskemit_settings)
    async with Emitter(LISTENERS, settings) as emitter:
        await redis.execute_command("CLIENT", "PAUSE", 700, "WRITE")  # Redis accepts no writes for 0.7 s
        emitter.emit("password_changed", email="a@example.com")
        emitter.emit("password_changed", email="b@example.com")
        # both emits returned while their writes could not have happened (reads still answer)
        assert await job_ids_in_queue(redis, settings) == []
    assert len(await job_ids_in_queue(redis, settings)) == 2


async def test_emit_from_another_thread(taskemit_settings: Settings, redis: aioredis.Redis) -> None:
    settings = no_drain(taskemit_settings)
    errors: list[BaseException] = []

    def in_thread(emitter: Emitter) -> None:
        try:
            for n in range(50):
                emitter.emit("password_changed", email=f"t{n}@example.com")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    async with Emitter(LISTENERS, settings) as emitter:
        threads = [threading.Thread(target=in_thread, args=(emitter,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        await asyncio.to_thread(lambda: [thread.join() for thread in threads])
    assert errors == []
    assert len(await job_ids_in_queue(redis, settings)) == 200


async def test_emit_before_enter_raises_runtime_error(taskemit_settings: Settings) -> None:
    emitter = Emitter(LISTENERS, taskemit_settings)
    with pytest.raises(RuntimeError, match="Emitter not initialized"):
        emitter.emit("user_created", email="a@example.com")
    async with emitter:
        pass
    with pytest.raises(RuntimeError, match="Emitter not initialized"):
        emitter.emit("user_created", email="a@example.com")


async def test_unknown_event_raises_naming_it(taskemit_settings: Settings, redis: aioredis.Redis) -> None:
    async with Emitter(LISTENERS, no_drain(taskemit_settings)) as emitter:
        with pytest.raises(UnknownEventError, match="'user_renamed'") as info:
            emitter.emit("user_renamed", name="x")
    assert isinstance(info.value, TaskEmitError)
    assert await redis.dbsize() == 0


async def test_unknown_event_ignored_when_configured(
    taskemit_settings: Settings, redis: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    settings = no_drain(taskemit_settings, on_unknown_event="ignore")
    caplog.set_level("INFO", logger="taskemit")
    async with Emitter(LISTENERS, settings) as emitter:
        emitter.emit("user_renamed", name="x")
        assert await emitter.publish("user_renamed", name="x") is None
    assert "user_renamed" in caplog.text
    assert await redis.dbsize() == 0


async def test_mismatched_arguments_raise_type_error_before_enqueue(
    taskemit_settings: Settings, redis: aioredis.Redis
) -> None:
    # the seeds' "would raise an exception" example: support_strict has no **kwargs
    async with Emitter([farewell, support_strict], no_drain(taskemit_settings)) as emitter:
        with pytest.raises(TypeError, match="support_strict") as info:
            emitter.emit("user_deleted", email="a@example.com", reason="deleted")
        assert isinstance(info.value, ListenerArgumentError)
        assert "email" in str(info.value)
    # not even the listener that could take the arguments got a job
    assert await redis.dbsize() == 0


async def test_missing_argument_raises_naming_listener(taskemit_settings: Settings) -> None:
    async with Emitter(LISTENERS, no_drain(taskemit_settings)) as emitter:
        with pytest.raises(ListenerArgumentError, match=r"welcome.*email"):
            emitter.emit("user_created")


async def test_unencodable_arguments_raise_at_emit(taskemit_settings: Settings, redis: aioredis.Redis) -> None:
    async with Emitter(LISTENERS, no_drain(taskemit_settings)) as emitter:
        with pytest.raises(PayloadEncodeError, match="json") as info:
            emitter.emit("user_created", email=object())
        assert isinstance(info.value, TypeError)
    assert await redis.dbsize() == 0


async def test_a_payload_over_the_limit_raises_at_emit(taskemit_settings: Settings, redis: aioredis.Redis) -> None:
    settings = no_drain(taskemit_settings, max_payload_bytes=1000)
    async with Emitter(LISTENERS, settings) as emitter:
        emitter.emit("user_created", email="a" * 500)  # under the limit: stored
        with pytest.raises(PayloadTooLarge, match=r"is 2,\d{3} bytes, more than max_payload_bytes=1,000") as info:
            emitter.emit("user_created", email="a" * 2000)
        assert isinstance(info.value, ValueError) and "welcome" in str(info.value)
    events = await redis.zcard(settings.keys.events)
    assert events == 1  # only the first


async def test_reserved_keyword_is_rejected(taskemit_settings: Settings) -> None:
    async with Emitter(LISTENERS, no_drain(taskemit_settings)) as emitter:
        with pytest.raises(TaskEmitError, match=META_KWARG):
            emitter.emit("user_deleted", email="a", **{META_KWARG: 1})


async def test_buffer_limit_raises_clear_error_without_a_spool(taskemit_settings: Settings) -> None:
    settings = no_drain(taskemit_settings, emit_buffer_size=3, spool=False)
    async with Emitter(LISTENERS, settings) as emitter:
        for _ in range(3):
            emitter.emit("password_changed", email="a@example.com")
        with pytest.raises(EmitBufferFull, match="emit_buffer_size=3"):
            emitter.emit("password_changed", email="a@example.com")


async def test_past_the_buffer_events_go_to_the_spool_and_are_stored_from_it(
    taskemit_settings: Settings, redis: aioredis.Redis
) -> None:
    from taskemit.emit.spool import Spool

    settings = no_drain(taskemit_settings, emit_buffer_size=3)
    async with Emitter(LISTENERS, settings) as emitter:
        for n in range(8):  # no await: the flusher has not run yet, 5 of them go to disk
            emitter.emit("password_changed", email=f"{n}@example.com")
        assert Spool(settings).count() == 5
        receipt = await emitter.publish("password_changed", email="last@example.com")  # also spooled
    assert receipt is not None
    assert await redis.zcard(settings.keys.events) == 9
    assert await redis.zcard(settings.queue_key) == 9
    assert Spool(settings).count() == 0


async def test_spooled_events_are_stored_once_however_often_the_spool_is_replayed(
    taskemit_settings: Settings, redis: aioredis.Redis
) -> None:
    import shutil

    from taskemit.emit.spool import Spool

    down = no_drain(taskemit_settings, redis_url="redis://127.0.0.1:1/0", shutdown_timeout=0.3, connect_timeout=0.2)
    async with Emitter(LISTENERS, down) as emitter:  # Redis unreachable: closing spools them
        for n in range(4):
            emitter.emit("password_changed", email=f"{n}@example.com")
    spool = Spool(taskemit_settings)
    assert spool.count() == 4
    copy = spool.path.with_name("copy.sqlite3")
    shutil.copy(spool.path, copy)
    settings = no_drain(taskemit_settings)
    async with Emitter(LISTENERS, settings):  # the next emitter stores them
        pass
    assert spool.count() == 0 and await redis.zcard(settings.queue_key) == 4
    shutil.copy(copy, spool.path)  # the same events again, as after a crash before forgetting them
    spool.close()
    async with Emitter(LISTENERS, settings):
        pass
    assert Spool(settings).count() == 0
    assert await redis.zcard(settings.queue_key) == 4  # not 8
    assert await redis.zcard(settings.keys.events) == 4


async def test_a_spooled_follow_up_keeps_its_cause(taskemit_settings: Settings, redis: aioredis.Redis) -> None:
    down = no_drain(taskemit_settings, redis_url="redis://127.0.0.1:1/0", shutdown_timeout=0.3, connect_timeout=0.2)
    async with Emitter(LISTENERS, down) as emitter:  # Redis unreachable: closing spools it
        emitter.caused_by("9c1e5d2a-0000-4000-8000-000000000001").emit("password_changed", email="a@example.com")
    settings = no_drain(taskemit_settings)
    async with Emitter(LISTENERS, settings):  # the next emitter stores it from the spool
        pass
    (uuid,) = await redis.zrange(settings.keys.events, 0, -1)
    assert await redis.hget(settings.keys.event(uuid.decode()), "cause") == b"9c1e5d2a-0000-4000-8000-000000000001"


async def test_an_event_redis_refuses_fails_alone_in_its_batch(
    taskemit_settings: Settings, redis: aioredis.Redis
) -> None:
    """Events stored in one script call: the one whose index key holds a string (WRONGTYPE)
    fails with that error and its job is not queued; the events before and after it in the
    batch are stored."""
    settings = no_drain(taskemit_settings)
    await redis.set(settings.keys.events_by_id("password_changed"), "not a sorted set")
    async with Emitter(LISTENERS, settings) as emitter:
        before = asyncio.ensure_future(emitter.publish("user_created", email="a@example.com"))
        refused = asyncio.ensure_future(emitter.publish("password_changed", email="b@example.com"))
        after = asyncio.ensure_future(emitter.publish("user_created", email="c@example.com"))
        stored = [await before, await after]
        with pytest.raises(Exception, match="WRONGTYPE"):
            await refused
    for receipt in stored:
        assert receipt is not None
        status = await event_status(redis, settings, receipt.event_uuid)
        assert status is not None and status.event_id == "user_created"
        assert len(status.jobs) == 2
    assert await redis.zcard(settings.keys.events_by_id("user_created")) == 2
    queued = set(await job_ids_in_queue(redis, settings))
    assert queued == {job_id for receipt in stored if receipt for job_id in receipt.jobs.values()}


async def test_pickle_serializer_round_trip(taskemit_settings: Settings) -> None:
    settings = taskemit_settings.model_copy(update={"serializer": "pickle"})
    payload = {"nested": (1, 2), "when": frozenset({3})}
    async with Emitter(LISTENERS, settings) as emitter:
        emitter.emit("user_deleted", email="a@example.com", extra=payload)
    assert received == [("farewell", ("a@example.com",), {"extra": payload})]


async def test_drain_on_exit_runs_the_listeners(taskemit_settings: Settings) -> None:
    assert taskemit_settings.drain_on_exit
    async with Emitter(LISTENERS, taskemit_settings) as emitter:
        emitter.emit("user_created", email="ada@example.com")
        emitter.emit("user_deleted", "positional@example.com", reason="gone")
        assert received == []
    assert sorted(received) == [
        ("farewell", ("positional@example.com",), {"reason": "gone"}),
        ("send_email", ("ada@example.com",), {"message": ""}),
        ("welcome", ("ada@example.com",), {}),
    ]


async def test_emits_survive_a_redis_restart(tmp_path: Any) -> None:
    from taskemit import load_settings
    from taskemit.store.redis_server import RedisServer

    with RedisServer() as server:
        settings = load_settings(redis_url=server.url, queue_name="q", shutdown_timeout=20)
        async with Emitter(LISTENERS, settings) as emitter:
            await emitter.publish("password_changed", email="before@example.com")
            server.stop()  # Redis dies: its script cache and data are gone
            emitter.emit("password_changed", email="during@example.com")
            await asyncio.sleep(0.3)
            server.start()
            receipt = await asyncio.wait_for(emitter.publish("password_changed", email="after@example.com"), 15)
        client = aioredis.Redis.from_url(server.url)
        try:
            queued = {m.decode() for m in await client.zrange(settings.queue_key, 0, -1)}
        finally:
            await client.aclose()
    # the emit made while Redis was down was buffered and stored once it came back
    assert receipt is not None and set(receipt.jobs.values()) <= queued
    assert len(queued) == 2


async def test_publish_once_stores_one_event_per_key(taskemit_settings: Settings, redis: aioredis.Redis) -> None:
    settings = no_drain(taskemit_settings)
    emitters = [Emitter(LISTENERS, settings) for _ in range(4)]
    for emitter in emitters:
        await emitter.__aenter__()
    try:
        # four processes' worth of emitters race to publish the same tick, ten times over
        results = await asyncio.gather(
            *(e.publish_once(f"tick-{n}", "user_created", email="a@example.com") for n in range(10) for e in emitters)
        )
    finally:
        for emitter in emitters:
            await emitter.__aexit__(None, None, None)
    stored = [r for r in results if r is not None]
    assert len(stored) == 10
    assert len({r.event_uuid for r in stored}) == 10
    assert await redis.zcard(settings.queue_key) == 20  # two listeners per event


async def test_drain_without_drain_on_exit_is_a_clear_error(taskemit_settings: Settings) -> None:
    async with Emitter(LISTENERS, no_drain(taskemit_settings)) as emitter:
        await emitter.publish("user_created", email="a@example.com")
        with pytest.raises(RuntimeError, match="drain_on_exit"):
            await emitter.drain()


async def test_a_frozen_redis_bounds_entering_and_publish(taskemit_settings: Settings) -> None:
    import os
    import signal
    import time

    from taskemit.errors import RedisUnavailable
    from taskemit.store.redis_server import RedisServer

    with RedisServer() as server:
        # the bounds are the feature: 0.5 s each, where every other wait on Redis is a minute, so an
        # unbounded step would take 60 s (or hang); 20 s is far above 0.5 s on a loaded machine
        settings = no_drain(
            taskemit_settings, redis_url=server.url, connect_timeout=0.5, publish_timeout=0.5, redis_timeout=60.0
        )
        assert server._process is not None
        os.kill(server._process.pid, signal.SIGSTOP)  # accepts connections, answers nothing
        try:
            started = time.monotonic()
            async with Emitter(LISTENERS, settings) as emitter:  # warns, does not hang
                assert time.monotonic() - started < 20
                started = time.monotonic()
                with pytest.raises(RedisUnavailable, match=r"publish_timeout=0\.5s") as info:
                    await emitter.publish("user_created", email="frozen@example.com")
                assert isinstance(info.value, ConnectionError) and time.monotonic() - started < 20
                os.kill(server._process.pid, signal.SIGCONT)
                receipt = await emitter.publish("user_created", email="thawed@example.com")
                assert receipt is not None
                status = await receipt.status()
                assert status is not None and status.event_id == "user_created"
        finally:
            os.kill(server._process.pid, signal.SIGCONT)
