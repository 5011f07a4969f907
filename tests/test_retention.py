"""The indexes stay bounded by their retention: the event indexes forget events past
``event_retention`` as events are stored, the dead-letter indexes forget letters past
``dead_letter_retention`` as jobs die, and the listener catalog forgets a listener no worker has
registered for ``catalog_retention``."""

from __future__ import annotations

import json
import time

from children import served_by
from redis import asyncio as aioredis

from taskemit import Emitter, listener
from taskemit.monitor.catalog import read_catalog
from taskemit.monitor.deadrecord import record_dead_letter
from taskemit.monitor.stats import outcome_args
from taskemit.settings import Settings
from taskemit.testing import InProcessWorker


@listener("parcel_sent", name="tests.retention.track")
async def track(parcel: int) -> None: ...


@listener("parcel_lost", name="tests.retention.refund")
async def refund(parcel: int) -> None: ...


@listener("parcel_lost", name="tests.retention.apologise")
async def apologise(parcel: int) -> None: ...


def ms_ago(seconds: float) -> int:
    return int((time.time() - seconds) * 1000)


async def test_storing_events_trims_the_event_indexes_to_the_retention(
    taskemit_settings: Settings, redis: aioredis.Redis
) -> None:
    settings = taskemit_settings.model_copy(update={"drain_on_exit": False, "event_retention": 100})
    space = settings.keys
    indexes = (space.events, space.events_by_id("parcel_sent"))
    for index in indexes:
        await redis.zadd(index, {"gone-long-ago": ms_ago(200), "recent": ms_ago(50)})
    untouched = space.events_by_id("parcel_lost")  # no event of this id is stored below
    await redis.zadd(untouched, {"gone-long-ago": ms_ago(200)})
    async with Emitter([track], settings) as emitter:
        receipt = await emitter.publish("parcel_sent", 1)
    assert receipt is not None
    for index in indexes:
        assert set(await redis.zrange(index, 0, -1)) == {b"recent", receipt.event_uuid.encode()}
    assert await redis.zrange(untouched, 0, -1) == [b"gone-long-ago"]


async def test_a_dead_letter_trims_the_dead_letter_indexes_to_the_retention(
    taskemit_settings: Settings, redis: aioredis.Redis
) -> None:
    settings = taskemit_settings.model_copy(update={"dead_letter_retention": 100})
    space = settings.keys
    indexes = (space.dead_index, space.dead_by_listener("app:l"), space.dead_by_event("e"))
    for index in indexes:
        await redis.zadd(index, {"gone-long-ago": ms_ago(200), "recent": ms_ago(50)})
    job_id = space.job_id("fresh")
    await record_dead_letter(
        redis,
        settings,
        job_id=job_id,
        listener="app:l",
        event_uuid="u1",
        event_id="e",
        reason="attempts exhausted",
        payload=b"",
        error={"type": "E", "message": "m", "where": []},
        final_attempt=json.dumps({"attempt": 1, "status": "failed", "error": {"type": "E", "message": "m"}}),
        outcome="{}",
        enqueued_ms=None,
        stats=outcome_args(space, "app:l", ["dead"], None),
    )
    for index in indexes:
        assert set(await redis.zrange(index, 0, -1)) == {b"recent", job_id.encode()}


async def test_the_catalog_forgets_a_listener_no_worker_registered_for_catalog_retention(
    taskemit_settings: Settings, redis: aioredis.Redis
) -> None:
    settings = taskemit_settings.model_copy(update={"drain_on_exit": False, "catalog_retention": 60})
    space = settings.keys
    async with InProcessWorker([refund, apologise], settings):
        await served_by(redis, settings, refund.name)
        await served_by(redis, settings, apologise.name)
    assert set(await read_catalog(redis, space=space)) == {refund.name, apologise.name}  # described, stopped
    # as if the worker had stopped long ago (refund) and a while ago (apologise)
    await redis.zadd(space.catalog_seen, {refund.name: ms_ago(120), apologise.name: ms_ago(30)})
    async with InProcessWorker([track], settings):  # another worker's registration tidies the catalog
        await served_by(redis, settings, track.name)
    assert set(await read_catalog(redis, space=space)) == {track.name, apologise.name}
    assert await redis.zscore(space.catalog_seen, refund.name) is None
    assert not await redis.hexists(space.catalog_flow, refund.name)
