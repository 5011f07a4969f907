"""Namespaces: every key carries the namespace's hash tag, and two namespaces on one Redis never meet."""

from __future__ import annotations

import asyncio
import itertools
import re
import uuid
from typing import Any

import pytest
from redis import asyncio as aioredis

from taskemit import Emitter, InvalidArgument, listener, load_settings
from taskemit.engine import InProcessWorker
from taskemit.monitor import event_status, list_dead_letters, live_workers, read_listener_stats, recent_events
from taskemit.schedule.scheduler import pause_schedule
from taskemit.settings import Settings
from taskemit.store.keys import ONCE_NAMESPACE, KeySpace

runs: list[tuple[str, Any]] = []


@listener("order_placed", name="shop:receipt")
async def receipt(order: int, namespace: str) -> None:
    runs.append((namespace, order))


@listener("order_placed", name="shop:audit", max_tries=1)
async def audit(order: int, namespace: str) -> None:
    if order < 0:
        raise ValueError("negative order")


def test_every_key_carries_the_namespace_hash_tag() -> None:
    space = KeySpace("shop")
    job_id = space.new_event_ids(1)[1][0]
    built = [
        space.queue("default"),
        space.job(job_id),
        space.in_progress(job_id),
        space.result(job_id),
        space.retry(job_id),
        space.event("u"),
        space.events,
        space.events_by_id("e"),
        space.event_counts,
        space.attempts(job_id),
        space.dead(job_id),
        space.dead_index,
        space.dead_by_listener("l"),
        space.dead_by_event("e"),
        space.listener_names,
        space.listener_stats("l"),
        space.history("1m", 60),
        space.history_sampler,
        space.workers,
        space.worker("w"),
        space.health_check("default"),
        space.cron_fired,
        space.cron_paused,
        space.cron_resumed,
    ]
    assert all(space.owns(key) for key in built)
    assert not any(KeySpace("shop2").owns(key) for key in built)
    # arq's fixed prefixes stay, so a stock arq worker finds the jobs
    assert space.job(job_id).startswith("arq:job:{shop}:")
    assert space.job_id(job_id) == job_id and space.job_id("abc") == "{shop}:abc"


@pytest.mark.parametrize("jobs", [0, 1, 3])
def test_an_emits_ids_are_a_version_4_uuid_and_distinct_job_ids_of_the_namespace(jobs: int) -> None:
    space = KeySpace("shop")
    drawn = [space.new_event_ids(jobs) for _ in range(300)]
    for event_uuid, job_ids in drawn:
        parsed = uuid.UUID(event_uuid)
        assert str(parsed) == event_uuid and parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert len(job_ids) == jobs
        # each job id names its event: the uuid's 32 hex digits, then the job's index in the fan-out
        event_hex = parsed.hex
        assert job_ids == [f"{{shop}}:{event_hex}.{k}" for k in range(jobs)]
        assert all(space.owns(job_id) and space.event_of_job(job_id) == event_uuid for job_id in job_ids)
    every_id = [job_id for _, job_ids in drawn for job_id in job_ids]
    assert len(set(every_id)) == len(every_id)
    assert len({event_uuid for event_uuid, _ in drawn}) == len(drawn)
    # the uuid's random digits are all used: its variant digit takes each of its four values
    assert {event_uuid[19] for event_uuid, _ in drawn} == set("89ab")


def test_a_job_id_names_its_event_or_none_when_of_another_form() -> None:
    space = KeySpace("shop")
    event_uuid = "0f0fa426-1b2c-4d3e-8f40-5a6b7c8d9e0f"
    assert space.event_of_job("{shop}:0f0fa4261b2c4d3e8f405a6b7c8d9e0f.3") == event_uuid
    once = space.once_job_ids(event_uuid, ["b", "a"])
    assert once == space.once_job_ids(event_uuid, ["a", "b"])  # whatever order they were registered in
    assert re.fullmatch(r"\{shop\}:0f0fa4261b2c4d3e8f405a6b7c8d9e0f\.[0-9a-f]{8}", once["a"])
    replay = space.new_job_id(event_uuid)
    assert re.fullmatch(r"\{shop\}:0f0fa4261b2c4d3e8f405a6b7c8d9e0f\.r[0-9a-f]{16}", replay)
    assert {space.event_of_job(job_id) for job_id in [*once.values(), replay]} == {event_uuid}
    # a job of no known event gets an id of the old form, which names none
    for unknown in (None, "", "not-a-uuid"):
        assert re.fullmatch(r"\{shop\}:[0-9a-f]{32}", space.new_job_id(unknown))
    for other in (
        "{shop}:0f0fa4261b2c4d3e8f405a6b7c8d9e0f",  # made before ids named their event
        "{shop}:my-own-id",  # chosen through arq
        "{shop2}:0f0fa4261b2c4d3e8f405a6b7c8d9e0f.3",  # another namespace's
        "{shop}:0F0FA4261B2C4D3E8F405A6B7C8D9E0F.3",
        "{shop}:0f0fa4261b2c4d3e8f405a6b7c8d9e0f.",
        "{shop}:0f0fa4261b2c4d3e8f405a6b7c8d9e0.3",
    ):
        assert space.event_of_job(other) is None, other


def test_once_ids_take_every_digit_when_two_listeners_short_suffixes_meet() -> None:
    space = KeySpace("shop")
    event_uuid = "0f0fa426-1b2c-4d3e-8f40-5a6b7c8d9e0f"
    seen: dict[str, str] = {}
    for n in itertools.count():  # two names whose first 8 digits meet (a birthday search: ~1e5 names)
        name = f"l{n}"
        short = uuid.uuid5(ONCE_NAMESPACE, f"{event_uuid}:{name}").hex[:8]
        if short in seen:
            pair = [seen[short], name]
            break
        seen[short] = name
    ids = space.once_job_ids(event_uuid, [*pair, "other"])
    assert len(set(ids.values())) == 3
    assert all(len(job_id.rsplit(".", 1)[1]) == 32 for job_id in ids.values())
    assert {space.event_of_job(job_id) for job_id in ids.values()} == {event_uuid}


@pytest.mark.parametrize("bad", ["", "has space", "{brace}", "x" * 65, "-leading"])
def test_bad_namespaces_are_refused_at_settings_load(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        KeySpace(bad)
    with pytest.raises(ValueError, match="namespace"):
        load_settings(namespace=bad)


async def _run_namespace(settings: Settings, orders: list[int]) -> list[str]:
    async with Emitter([receipt, audit], settings) as emitter:
        receipts = [await emitter.publish("order_placed", order, namespace=settings.namespace) for order in orders]
    async with InProcessWorker([receipt, audit], settings):
        for item in receipts:
            assert item is not None
            await item.wait(timeout=20)
    return [item.event_uuid for item in receipts if item is not None]


async def test_an_end_to_end_run_writes_only_keys_of_its_namespace(
    taskemit_settings: Settings, redis: aioredis.Redis
) -> None:
    settings = taskemit_settings.model_copy(update={"drain_on_exit": False})
    runs.clear()
    await _run_namespace(settings, [1, 2, -3])
    await pause_schedule(redis, "nightly", space=settings.keys)
    found = [key async for key in redis.scan_iter(count=1000)]
    assert len(found) > 10  # events, jobs' results, attempts, a dead letter, stats, a schedule...
    foreign = [key for key in found if not settings.keys.owns(key)]
    assert foreign == []


async def test_two_namespaces_on_one_redis_never_see_each_others_events(
    taskemit_redis_url: str, redis: aioredis.Redis
) -> None:
    blue = load_settings(redis_url=taskemit_redis_url, namespace="blue")
    green = load_settings(redis_url=taskemit_redis_url, namespace="green")
    runs.clear()
    # each namespace emits, and only then does each worker start: a shared queue would mix them
    async with Emitter([receipt, audit], blue) as emitter:
        blue_receipt = await emitter.publish("order_placed", 1, namespace="blue")
        await emitter.publish("order_placed", -1, namespace="blue")
    async with Emitter([receipt, audit], green) as emitter:
        green_receipt = await emitter.publish("order_placed", 2, namespace="green")
    assert blue_receipt is not None and green_receipt is not None
    async with InProcessWorker([receipt, audit], blue):
        await blue_receipt.wait(timeout=20)
        await asyncio.sleep(0.3)  # time enough to take green's jobs, were they visible
        assert sorted(runs) == [("blue", -1), ("blue", 1)]
        assert [w.queue for w in await live_workers(redis, space=green.keys)] == []
    assert await event_status(redis, blue, green_receipt.event_uuid) is None
    assert (await event_status(redis, green, green_receipt.event_uuid)) is not None
    assert [e.event_uuid for e in (await recent_events(redis, green)).items] == [green_receipt.event_uuid]
    assert len((await list_dead_letters(redis, space=blue.keys)).items) == 1
    assert (await list_dead_letters(redis, space=green.keys)).items == []
    assert await read_listener_stats(redis, space=green.keys) == []
    async with InProcessWorker([receipt, audit], green):
        await green_receipt.wait(timeout=20)
    assert sorted(runs) == [("blue", -1), ("blue", 1), ("green", 2)]
