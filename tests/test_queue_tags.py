"""The emit path and the worker on a sharded KeySpace (a hash tag per queue, as on a Redis
Cluster), against one Redis, which takes keys of any tag: the jobs of each queue (and of each
shard of a sharded listener) are stored and claimed on their own tag, an event's record on the
control tag, and a partial store is completed by sending the event again. tests/test_cluster.py
runs the same on a real cluster, where a script that names keys of two slots is refused."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import pytest
import redis as sync_redis

from taskemit import Attempt, Emitter
from taskemit.emit.catalog import describe
from taskemit.emit.listener import Listener
from taskemit.emit.spool import Spool
from taskemit.engine import InProcessWorker
from taskemit.monitor.catalog import register_listeners
from taskemit.monitor.queues import queue_depths
from taskemit.monitor.workers import listener_views
from taskemit.settings import Settings
from taskemit.store.connection import redis_client
from taskemit.store.keys import KeySpace, tag_of

runs: Counter[tuple[str, int]] = Counter()


async def _record(n: int, attempt: Attempt) -> None:
    runs[(attempt.listener, n)] += 1


async def _fail(n: int) -> None:
    raise RuntimeError(f"no {n}")


@pytest.fixture
def sharded(taskemit_settings: Settings) -> Settings:
    """The test's settings with each queue on a tag of its own (as on a Redis Cluster)."""
    settings = taskemit_settings.model_copy(update={"drain_on_exit": False})
    settings.__dict__["keys"] = KeySpace(settings.namespace, sharded=True)
    runs.clear()
    return settings


@pytest.fixture
def client(sharded: Settings) -> Any:
    with sync_redis.Redis.from_url(sharded.redis_url, decode_responses=True) as found:
        yield found


def tags_of(client: Any, pattern: str) -> set[str | None]:
    return {tag_of(key) for key in client.keys(pattern)}


async def _until(check: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {check}"
        await asyncio.sleep(0.02)


async def test_each_queues_jobs_are_stored_and_claimed_on_its_own_tag(sharded: Settings, client: Any) -> None:
    ns = sharded.namespace
    listeners = [Listener(_record, ["spread"], name=f"on-{queue}", queue=queue) for queue in ("a", "b", "c")]
    async with Emitter(listeners, sharded) as emitter:
        receipts = [await emitter.publish("spread", n=n) for n in range(5)]
    assert all(receipt is not None for receipt in receipts)
    # the jobs' ids, payloads, queues and ready sets on their queue's tag; the records on the control tag
    for receipt in receipts:
        assert receipt is not None
        assert {tag_of(job_id) for job_id in receipt.jobs.values()} == {f"{{{ns}/a}}", f"{{{ns}/b}}", f"{{{ns}/c}}"}
    assert tags_of(client, "arq:job:*") == {f"{{{ns}/a}}", f"{{{ns}/b}}", f"{{{ns}/c}}"}
    assert len(client.keys(f"{{{ns}}}:event:*")) == 5
    for queue in ("a", "b", "c"):
        key = sharded.keys.queue(queue)
        assert key == f"{{{ns}/{queue}}}:queue:{queue}"
        assert client.zcard(key) == 5 and client.zcard(sharded.keys.ready(key, f"on-{queue}")) == 5
        assert len(client.keys(f"{{{ns}/{queue}}}:outcome:*")) == 5  # each tag's part of each event
    record = client.hgetall(sharded.keys.event(receipts[0].event_uuid))  # type: ignore[union-attr]
    assert json.loads(record["jobs"]) == receipts[0].jobs  # type: ignore[union-attr]
    async with InProcessWorker(listeners, sharded):
        await _until(lambda: sum(runs.values()) == 15)
    assert set(runs.values()) == {1}
    # the outcomes are in each tag's hash of the event, where the finish on that tag wrote them
    first = receipts[0]
    assert first is not None
    for name, job_id in first.jobs.items():
        outcomes = client.hgetall(sharded.keys.space_of(job_id).outcomes(first.event_uuid))
        assert json.loads(outcomes["job:" + job_id])["status"] == "complete", name
    assert client.keys("arq:job:*") == []


async def test_a_sharded_listeners_jobs_take_its_shards_in_turns_and_run_once(sharded: Settings, client: Any) -> None:
    hot = Listener(_record, ["hot"], name="hot", queue="hot", shards=3)
    async with Emitter([hot], sharded) as emitter:
        for n in range(30):
            await emitter.publish("hot", n=n)
    queues = [sharded.keys.queue("hot", shard, 3) for shard in range(3)]
    assert len({tag_of(queue) for queue in queues}) == 3
    assert [client.zcard(sharded.keys.ready(queue, "hot")) for queue in queues] == [10, 10, 10]
    # the queue's depth counts the jobs on every shard, once the catalog says the listener has three
    async with redis_client(sharded) as redis:
        await register_listeners(
            redis, [describe(hot, sharded.queue_name)], space=sharded.keys, worker_id="w", live_for=5, retention=60
        )
        (depth,) = [view for view in await queue_depths(redis, sharded) if view.queue == "hot"]
        (view,) = await listener_views(redis, space=sharded.keys)
    assert (depth.queued, depth.listeners) == (30, 1)
    assert (view.listener, view.queue, view.queued) == ("hot", "hot", 30)
    async with InProcessWorker([hot], sharded):
        await _until(lambda: sum(runs.values()) == 30)
    assert sorted(n for _, n in runs) == list(range(30)) and set(runs.values()) == {1}


async def test_a_dead_job_is_parked_on_its_queues_tag(sharded: Settings, client: Any) -> None:
    failing = Listener(_fail, ["doomed"], name="doomed", queue="risky", max_tries=1)
    async with Emitter([failing], sharded) as emitter:
        receipt = await emitter.publish("doomed", n=1)
    assert receipt is not None
    (job_id,) = receipt.jobs.values()
    space = sharded.keys.for_queue("risky")
    async with InProcessWorker([failing], sharded):
        await _until(lambda: client.exists(sharded.keys.dead(job_id)))
    assert sharded.keys.dead(job_id).startswith(space.prefix)
    assert client.zscore(space.dead_index, job_id) is not None
    assert client.zscore(sharded.keys.dead_index, job_id) is None  # not on the control tag


async def test_an_event_stored_in_part_is_completed_when_sent_again(sharded: Settings, client: Any) -> None:
    """The record's part is stored, the queue's part is refused (a key of the wrong type): the event
    is parked, nothing of the queue's part is left, and flushing it stores the jobs once."""
    item = Listener(_record, ["partial"], name="partial", queue="p")
    queue = sharded.keys.queue("p")
    ready = sharded.keys.ready(queue, "partial")
    client.set(ready, "not a sorted set")
    async with Emitter([item], sharded) as emitter:
        with pytest.raises(sync_redis.ResponseError, match="WRONGTYPE"):
            await emitter.publish("partial", n=1)
        spool = Spool(sharded)
        assert len(spool.parked()) == 1
        assert len(client.keys(f"{{{sharded.namespace}}}:event:*")) == 1  # the control tag's part
        assert client.keys("arq:job:*") == []  # the queue's part taken back (its payload, its record)
        assert client.keys(f"{sharded.keys.for_queue('p').prefix}outcome:*") == []
        client.delete(ready)
        assert spool.unpark() == 1
        await emitter.flush_spool(timeout=10)
    assert client.zcard(queue) == 1 and client.zcard(ready) == 1
    assert int(client.hget(sharded.keys.event_counts, "partial")) == 1  # the record's part counted once
    async with InProcessWorker([item], sharded):
        await _until(lambda: sum(runs.values()) == 1)
    assert runs == Counter({("partial", 1): 1})


async def test_publish_once_stores_each_part_once(sharded: Settings, client: Any) -> None:
    listeners = [Listener(_record, ["once"], name=f"once-{queue}", queue=queue) for queue in ("x", "y")]
    async with Emitter(listeners, sharded) as emitter:
        first = await emitter.publish_once("key-1", "once", n=1)
        again = await emitter.publish_once("key-1", "once", n=1)
    assert first is not None and again is None
    assert client.keys("arq:job:*") and len(client.keys("arq:job:*")) == 2
    assert {tag_of(job_id) for job_id in first.jobs.values()} == {
        sharded.keys.for_queue("x").tag,
        sharded.keys.for_queue("y").tag,
    }
