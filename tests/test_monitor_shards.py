"""The readers and operators on a sharded KeySpace (a hash tag per queue, as on a Redis Cluster),
against one Redis: it takes keys of any tag, so the data is laid out across tags as a cluster's
would be, and every answer must be the one the keys of one tag would give. Each script call must
name keys of one tag only (a cluster refuses others): checked on every call these tests make."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from redis import asyncio as aioredis

from taskemit.flow import FlowControl
from taskemit.monitor.abort import abort_job
from taskemit.monitor.catalog import CatalogEntry, read_catalog, register_listeners
from taskemit.monitor.deadletter import (
    count_dead_letters,
    get_dead_letter,
    list_dead_letters,
    purge_dead_letters,
    replay_dead_letter,
)
from taskemit.monitor.deadrecord import record_dead_letter
from taskemit.monitor.flow import flow_states
from taskemit.monitor.ids import full_job_id, resolve_id
from taskemit.monitor.queues import queue_depths
from taskemit.monitor.stats import outcome_args, read_listener_stats
from taskemit.monitor.status import event_status, job_status
from taskemit.monitor.tags import queue_name_of, queue_spaces, spaces_from
from taskemit.monitor.workers import listener_views
from taskemit.settings import Settings
from taskemit.state import JobState
from taskemit.store import scripts
from taskemit.store.codec import get_codec
from taskemit.store.keys import KeySpace, tag_of


@pytest.fixture
def sharded(taskemit_settings: Settings) -> Settings:
    """The test's settings with each queue on a tag of its own (as on a Redis Cluster)."""
    settings = taskemit_settings.model_copy()
    settings.__dict__["keys"] = KeySpace(settings.namespace, sharded=True)
    return settings


@pytest.fixture(autouse=True)
def one_tag_per_call(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, list[str]]]]:
    """Every script call of the test names keys of one hash tag (else the test fails)."""
    calls: list[tuple[str, list[str]]] = []
    original_call, original_command = scripts.LuaScript.__call__, scripts.LuaScript.command

    def check(script: scripts.LuaScript, keys: list[str]) -> None:
        calls.append((script.name, list(keys)))
        tags = {tag_of(key) for key in keys}
        assert len(tags) <= 1, f"{script.name}.lua called with keys of several tags: {keys}"

    async def call(self: scripts.LuaScript, client: Any, keys: list[str], args: list[Any]) -> Any:
        check(self, keys)
        return await original_call(self, client, keys, args)

    def command(self: scripts.LuaScript, keys: list[str], args: list[Any]) -> tuple[Any, ...]:
        check(self, keys)
        return original_command(self, keys, args)

    def queue(self: scripts.LuaScript, pipe: Any, keys: list[str], args: list[Any]) -> None:
        check(self, keys)
        pipe.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)

    monkeypatch.setattr(scripts.LuaScript, "__call__", call)
    monkeypatch.setattr(scripts.LuaScript, "command", command)
    monkeypatch.setattr(scripts.LuaScript, "queue", queue)
    yield calls


def test_spaces_and_queue_names() -> None:
    one = KeySpace("ns")
    assert spaces_from(one, ["{ns}:queue:a"], ['{"queue": "b"}']) == [one]
    assert queue_name_of(one, one.queue("a")) == "a"
    keys = KeySpace("ns", sharded=True)
    spaces = spaces_from(keys, [keys.queue("a").encode(), keys.queue("b")], ['{"queue": "c"}', "not json", "{}"])
    assert [space.tag for space in spaces] == ["{ns}", "{ns/a}", "{ns/b}", "{ns/c}"]
    assert queue_name_of(keys, keys.queue("a")) == "a" and queue_name_of(keys, "{ns}:queue:x") == "x"
    sharded = spaces_from(keys, [], ['{"queue": "d", "shards": 3}'])
    assert sharded[0] == keys and {space.tag for space in sharded[1:]} == {keys.queue_tag("d", k, 3) for k in range(3)}
    assert len(sharded) == 4


async def test_queue_spaces_come_from_routes_and_catalog(
    taskemit_settings: Settings, sharded: Settings, redis: aioredis.Redis
) -> None:
    assert await queue_spaces(redis, taskemit_settings.keys) == [taskemit_settings.keys]
    keys = sharded.keys
    assert await queue_spaces(redis, keys) == [keys]  # nothing routed yet: safe to call
    await redis.hset(keys.routes, mapping={"a": keys.queue("q1"), "b": keys.queue("q2"), "c": keys.queue("q1")})
    await redis.hset(keys.catalog, "d", json.dumps({"queue": "q3"}))
    spaces = await queue_spaces(redis, keys)
    assert spaces == [keys, keys.for_queue("q1"), keys.for_queue("q2"), keys.for_queue("q3")]


async def _event(redis: aioredis.Redis, keys: KeySpace, jobs: dict[str, str], queues: dict[str, str]) -> str:
    """An event record laid out by hand (as emit.lua stores one), its uuid."""
    event_uuid = str(uuid.uuid4())
    await redis.zadd(keys.events, {event_uuid: int(time.time() * 1000)})
    await redis.hset(
        keys.event(event_uuid),
        mapping={
            "event": "order.paid",
            "emitted_at": int(time.time() * 1000),
            "jobs": json.dumps(jobs),
            "queues": json.dumps(queues),
        },
    )
    return event_uuid


async def test_event_status_merges_the_outcomes_of_each_queue_tag(sharded: Settings, redis: aioredis.Redis) -> None:
    keys = sharded.keys
    q1, q2 = keys.for_queue("q1"), keys.for_queue("q2")
    event_uuid, ids = keys.new_event_ids(3, [q1.prefix, q2.prefix, q2.prefix])
    jobs = {"app:a": ids[0], "app:b": ids[1], "app:c": ids[2]}
    queues = {"app:a": keys.queue("q1"), "app:b": keys.queue("q2"), "app:c": keys.queue("q2")}
    await redis.zadd(keys.events, {event_uuid: int(time.time() * 1000)})
    await redis.hset(
        keys.event(event_uuid),
        mapping={"event": "order.paid", "emitted_at": 1000, "jobs": json.dumps(jobs), "queues": json.dumps(queues)},
    )
    done = {"status": "complete", "job_try": 1, "started": 1.0, "finished": 2.0, "worker": "w1"}
    failed = {"status": "failed", "job_try": 3, "error": {"type": "E", "message": "no"}}
    await redis.hset(q1.outcomes(event_uuid), mapping={"stored": 1, "job:" + ids[0]: json.dumps(done)})
    await redis.hset(q2.outcomes(event_uuid), mapping={"stored": 1, "job:" + ids[1]: json.dumps(failed)})
    await redis.zadd(keys.queue("q2"), {ids[2]: 0})  # the third still waits on its queue

    event = await event_status(redis, sharded, event_uuid)
    assert event is not None
    statuses = {job.listener: job.status for job in event.jobs}
    assert statuses == {"app:a": JobState.COMPLETE, "app:b": JobState.FAILED, "app:c": JobState.QUEUED}
    by_listener = {job.listener: job for job in event.jobs}
    assert by_listener["app:a"].worker == "w1" and by_listener["app:b"].error == {"type": "E", "message": "no"}
    assert event.status == JobState.FAILED
    # one job by its id: through its event's record, its outcome on its queue's tag
    assert (await job_status(redis, sharded, ids[0])).status == JobState.COMPLETE
    # the short id people type (no tag) resolves to the id the record lists
    token = ids[1].split(":", 1)[1]
    assert await full_job_id(redis, sharded, token) == ids[1]
    assert await resolve_id(redis, sharded, token) == ids[1]
    assert await resolve_id(redis, sharded, token[:10] + token[32:]) == ids[1]


async def _bury(redis: aioredis.Redis, settings: Settings, queue: str, n: int, listener: str = "app:l") -> str:
    keys = settings.keys
    event_uuid = str(uuid.uuid4())
    job_id = keys.for_queue(queue).new_job_id(event_uuid)
    await redis.hset(
        keys.event(event_uuid),
        mapping={
            "event": "e",
            "emitted_at": 1,
            "jobs": json.dumps({listener: job_id}),
            "queues": json.dumps({listener: keys.queue(queue)}),
        },
    )
    await redis.hset(keys.for_queue(queue).outcomes(event_uuid), "stored", 1)
    payload = get_codec("json").encode_job(
        listener, (n,), {"__taskemit__": {"event": event_uuid, "event_id": "e"}}, enqueue_ms=1000
    )
    await record_dead_letter(
        redis,
        settings,
        job_id=job_id,
        listener=listener,
        event_uuid=event_uuid,
        event_id="e",
        reason="attempts exhausted",
        payload=payload,
        error={"type": "E", "message": f"m{n}", "where": []},
        final_attempt=json.dumps({"attempt": 1, "status": "failed"}),
        outcome=json.dumps({"status": "failed"}),
        enqueued_ms=1000,
        stats=outcome_args(keys, listener, ["dead"], None),  # the engine's; recorded on the job's tag
        queue=keys.queue(queue),
    )
    time.sleep(0.002)  # distinct died_at scores
    return job_id


async def test_dead_letters_across_queue_tags(sharded: Settings, redis: aioredis.Redis) -> None:
    keys = sharded.keys
    await redis.hset(keys.routes, mapping={"app:l": keys.queue("q1"), "app:m": keys.queue("q2")})
    ids = [await _bury(redis, sharded, "q1" if n % 2 else "q2", n, "app:l" if n < 4 else "app:m") for n in range(7)]
    for job_id in ids:  # each on its queue's tag, with its outcome and counters there
        space = keys.space_of(job_id)
        assert not space.is_control and await redis.zscore(space.dead_index, job_id) is not None
        event_uuid = keys.event_of_job(job_id)
        assert event_uuid is not None
        assert json.loads(await redis.hget(space.outcomes(event_uuid), "job:" + job_id))["status"] == "failed"
    assert await redis.zcard(keys.dead_index) == 0  # nothing on the control tag

    page = await list_dead_letters(redis, limit=3, space=keys)
    assert [letter.job_id for letter in page.items] == ids[::-1][:3] and page.next_cursor == 3
    rest = await list_dead_letters(redis, limit=10, cursor=3, space=keys)
    assert [letter.job_id for letter in rest.items] == ids[::-1][3:] and rest.next_cursor is None
    by_listener = await list_dead_letters(redis, listener="app:l", limit=10, space=keys)
    assert [letter.job_id for letter in by_listener.items] == ids[:4][::-1]
    assert await count_dead_letters(redis, space=keys) == 7
    assert await count_dead_letters(redis, listener="app:m", space=keys) == 3
    assert await count_dead_letters(redis, event="e", space=keys) == 7

    stats = {s.listener: s for s in await read_listener_stats(redis, space=keys)}
    assert stats["app:l"].dead == 4 and stats["app:m"].dead == 3  # summed over the two tags
    views = {view.listener: view for view in await listener_views(redis, space=keys)}
    assert views["app:l"].dead == 4 and views["app:l"].queue == "q1" and views["app:m"].queue == "q2"

    # an expired letter: skipped, its index entry tidied on its own tag
    await redis.delete(keys.dead(ids[5]))
    assert [letter.job_id for letter in (await list_dead_letters(redis, limit=10, space=keys)).items] == [
        ids[6],
        ids[4],
        ids[3],
        ids[2],
        ids[1],
        ids[0],
    ]
    assert await redis.zscore(keys.space_of(ids[5]).dead_index, ids[5]) is None

    # replay: a new job on the dead job's tag, back on its queue, listed on the event's record
    dead = ids[1]
    letter = await get_dead_letter(redis, dead, space=keys)
    assert letter is not None and letter.event_uuid is not None
    new_job_id = await replay_dead_letter(redis, sharded, dead)
    assert new_job_id is not None and tag_of(new_job_id) == tag_of(dead) == "{" + keys.namespace + "/q1}"
    assert keys.event_of_job(new_job_id) == letter.event_uuid
    assert await redis.zscore(keys.queue("q1"), new_job_id) is not None
    assert await redis.zscore(keys.ready(keys.queue("q1"), "app:l"), new_job_id) is not None
    assert json.loads(await redis.hget(keys.event(letter.event_uuid), "jobs")) == {"app:l": new_job_id}
    assert await get_dead_letter(redis, dead, space=keys) is None
    assert [e["status"] for e in map(json.loads, await redis.lrange(keys.attempts(new_job_id), 0, -1))] == [
        "failed",
        "replayed",
    ]

    assert await purge_dead_letters(redis, listener="app:m", space=keys) == 2  # (ids[5] expired)
    assert await purge_dead_letters(redis, space=keys) == 3
    assert await count_dead_letters(redis, space=keys) == 0


async def test_replay_keeps_to_one_tag_on_one_redis(taskemit_settings: Settings, redis: aioredis.Redis) -> None:
    """Unsharded, the outcome hash of a replay is the event record itself (as before)."""
    keys = taskemit_settings.keys
    job_id = await _bury(redis, taskemit_settings, "default", 1)
    new_job_id = await replay_dead_letter(redis, taskemit_settings, job_id)
    assert new_job_id is not None and new_job_id.startswith(keys.prefix)
    event_uuid = keys.event_of_job(job_id)
    assert event_uuid is not None
    assert json.loads(await redis.hget(keys.event(event_uuid), "jobs")) == {"app:l": new_job_id}


async def test_counters_of_one_listener_on_several_tags_are_summed(sharded: Settings, redis: aioredis.Redis) -> None:
    keys = sharded.keys
    await redis.hset(keys.routes, mapping={"app:l": keys.queue("q1")})
    await redis.hset(keys.catalog, "app:x", json.dumps({"queue": "q2"}))
    q1, q2 = keys.for_queue("q1"), keys.for_queue("q2")
    for space, ok, total in ((q1, 3, "0.5"), (q2, 2, "0.25")):
        await redis.sadd(space.listener_names, "app:l")
        await redis.hset(
            space.listener_stats("app:l"),
            mapping={"succeeded": ok, "duration_count": ok, "duration_sum": total, "le:0.1": ok},
        )
    (stats,) = await read_listener_stats(redis, space=keys)
    assert stats.succeeded == 5 and stats.duration_count == 5 and stats.duration_sum == pytest.approx(0.75)
    assert stats.buckets == {"0.1": 5}


async def test_flow_limits_go_to_the_queue_tag(sharded: Settings, redis: aioredis.Redis) -> None:
    keys = sharded.keys
    flow = FlowControl(concurrency=2)
    entry = CatalogEntry("app:f", ("e",), False, "q1", "pool", True, (), flow=flow)
    count, conflicts = await register_listeners(
        redis, [entry], space=keys, worker_id="w1", live_for=10, retention=60, started=1.0
    )
    assert count == 1 and conflicts == []
    assert await redis.hget(keys.for_queue("q1").flow("app:f"), "concurrency") == b"2"
    assert not await redis.exists(keys.flow("app:f"))  # nothing on the control tag
    assert (await read_catalog(redis, space=keys))["app:f"].flow == flow
    # a newer declaration with another rate: the bucket starts full, on the queue's tag
    await redis.hset(keys.for_queue("q1").flow("app:f"), mapping={"tokens": "0.5", "tokens_at": "1"})
    newer = CatalogEntry("app:f", ("e",), False, "q1", "pool", True, (), flow=FlowControl(concurrency=3))
    await register_listeners(redis, [newer], space=keys, worker_id="w2", live_for=10, retention=60, started=2.0)
    flow_hash = await redis.hgetall(keys.for_queue("q1").flow("app:f"))
    assert flow_hash == {b"concurrency": b"3"}
    await redis.hset(keys.routes, "app:f", keys.queue("q1"))
    await redis.zadd(keys.ready(keys.queue("q1"), "app:f"), {"j1": 0, "j2": 0})
    states = await flow_states(
        redis, space=keys, queues={"app:f": keys.queue("q1")}, declared={"app:f": FlowControl(concurrency=3)}
    )
    assert states["app:f"].ready == 2


async def test_flow_limits_script_is_loaded_when_missing(taskemit_settings: Settings, redis: aioredis.Redis) -> None:
    await redis.script_flush()
    entry = CatalogEntry("app:f", ("e",), False, "default", "pool", True, (), flow=FlowControl(concurrency=1))
    await register_listeners(
        redis, [entry], space=taskemit_settings.keys, worker_id="w", live_for=10, retention=60, started=1.0
    )
    assert await redis.hget(taskemit_settings.keys.flow("app:f"), "concurrency") == b"1"


async def test_abort_and_queue_depths_on_a_queue_tag(sharded: Settings, redis: aioredis.Redis) -> None:
    keys = sharded.keys
    q1 = keys.for_queue("q1")
    event_uuid, (job_id,) = keys.new_event_ids(1, [q1.prefix])
    await redis.hset(keys.routes, "app:a", keys.queue("q1"))
    await redis.hset(
        keys.event(event_uuid),
        mapping={"event": "e", "emitted_at": 1, "jobs": json.dumps({"app:a": job_id})},
    )
    await redis.hset(q1.outcomes(event_uuid), "stored", 1)
    payload = get_codec("json").encode_job("app:a", (), {"__taskemit__": {"event": event_uuid}}, enqueue_ms=1)
    await redis.set(keys.job(job_id), payload)
    await redis.zadd(keys.queue("q1"), {job_id: 0})
    await redis.zadd(keys.ready(keys.queue("q1"), "app:a"), {job_id: 0})
    depths = {view.queue: view for view in await queue_depths(redis, sharded)}
    assert depths["q1"].queued == 1 and depths["q1"].listeners == 1 and "default" in depths

    assert await abort_job(redis, sharded, job_id.split(":", 1)[1]) == "aborted"  # the short id as typed
    assert json.loads(await redis.hget(q1.outcomes(event_uuid), "job:" + job_id))["status"] == "aborted"
    assert await redis.zcard(keys.queue("q1")) == 0
    (job,) = (await event_status(redis, sharded, event_uuid)).jobs  # type: ignore[union-attr]
    assert job.status == JobState.ABORTED


async def test_prometheus_sums_over_queue_tags(sharded: Settings, redis: aioredis.Redis) -> None:
    from prometheus_client import generate_latest

    from taskemit.monitor.metrics import metrics_registry

    keys = sharded.keys
    await redis.hset(keys.routes, mapping={"app:l": keys.queue("q1"), "app:m": keys.queue("q2")})
    for n in range(3):
        await _bury(redis, sharded, "q1" if n else "q2", n)
    text = (await asyncio.to_thread(generate_latest, metrics_registry(sharded))).decode()
    assert "taskemit_dead_letters 3.0" in text
    assert 'taskemit_listener_attempts_total{listener="app:l",outcome="dead"} 3.0' in text


async def test_the_dashboard_takes_job_ids_with_a_queue_tag(sharded: Settings, redis: aioredis.Redis) -> None:
    """A queue's tag has a '/' (``{ns/queue}``), which a URL's path splits even when quoted."""
    from urllib.parse import quote

    from litestar.testing import AsyncTestClient
    from test_dashboard import ADMIN, VIEWER, csrf_token, make_app

    keys = sharded.keys
    await redis.hset(keys.routes, mapping={"app:l": keys.queue("q1")})
    dead = await _bury(redis, sharded, "q1", 1)
    assert "/" in dead
    async with AsyncTestClient(make_app(sharded, run_workers_in_app=False)) as client:
        letter = (await client.get(f"/taskemit/api/dead/{dead}", headers=VIEWER)).json()
        assert letter["job_id"] == dead
        page = await client.get(f"/taskemit/dead/{quote(dead, safe='')}", headers=VIEWER)
        assert page.status_code == 200 and dead in page.text
        token = await csrf_token(client)
        replayed = await client.post(f"/taskemit/api/dead/{dead}/replay", headers={**ADMIN, "x-csrftoken": token})
        new_job_id = replayed.json()["new_job_id"]
        assert tag_of(new_job_id) == tag_of(dead)
        assert (await client.get(f"/taskemit/api/jobs/{new_job_id}", headers=VIEWER)).json()["status"] == "queued"
        event_uuid = keys.event_of_job(new_job_id)
        response = await client.post(
            f"/taskemit/events/{event_uuid}/jobs/{quote(new_job_id, safe='')}/abort",
            data={"_csrf_token": token},
            headers=ADMIN,
            follow_redirects=False,
        )
        assert response.status_code == 303 and "notice=Aborted" in response.headers["location"]
        again = await client.post(f"/taskemit/api/jobs/{new_job_id}/abort", headers={**ADMIN, "x-csrftoken": token})
        assert again.json() == {"job_id": new_job_id, "outcome": "missing"}
        shard = keys.for_queue("q1", 2).new_job_id(None)  # a listener's shard k > 0: two '/'
        assert (
            (await client.get(f"/taskemit/api/jobs/{shard}", headers=VIEWER))
            .json()["detail"]
            .startswith(f"no job {shard!r}")
        )


async def test_ids_typed_without_their_tag_are_found_by_their_keys(sharded: Settings, redis: aioredis.Redis) -> None:
    """A dead job whose event's record expired: its dead letter's key, on its queue's tag, names it."""
    keys = sharded.keys
    dead = await _bury(redis, sharded, "q1", 1)
    event_uuid = keys.event_of_job(dead)
    assert event_uuid is not None
    await redis.delete(keys.event(event_uuid))
    await redis.zrem(keys.events, event_uuid)
    token = dead.split(":", 1)[1]
    assert await resolve_id(redis, sharded, token[:12]) == dead  # a prefix
    assert await resolve_id(redis, sharded, token[:8] + "…" + token[32:]) == dead  # as the dashboard shows it
    assert await resolve_id(redis, sharded, dead) == dead


def test_the_queue_of_a_tag() -> None:
    from taskemit.monitor.tags import queue_of_space

    keys = KeySpace("ns", sharded=True)
    assert queue_of_space(keys.for_queue("q1")) == keys.queue("q1")
    assert tag_of(queue_of_space(keys.for_queue("q1", 2))) == "{ns/q1/2}"
    assert tag_of(queue_of_space(keys)) == "{ns}"
    assert queue_of_space(KeySpace("ns")) == KeySpace("ns").queue("default")


async def test_purge_keeps_to_the_tag_of_a_letter_that_names_no_queue(sharded: Settings, redis: aioredis.Redis) -> None:
    keys = sharded.keys
    dead = await _bury(redis, sharded, "q1", 1)
    await redis.hdel(keys.dead(dead), "queue")  # (a letter of an older version)
    await redis.hset(keys.routes, "app:l", keys.queue("q1"))
    assert await purge_dead_letters(redis, space=keys, queue=sharded.queue_key) == 1


async def test_replay_of_a_letter_that_names_no_queue_goes_to_its_tag(sharded: Settings, redis: aioredis.Redis) -> None:
    keys = sharded.keys
    dead = await _bury(redis, sharded, "q1", 1)
    await redis.hdel(keys.dead(dead), "queue")
    new_job_id = await replay_dead_letter(redis, sharded, dead)
    assert new_job_id is not None and await redis.zscore(keys.queue("q1"), new_job_id) is not None
