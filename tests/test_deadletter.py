"""Dead-letter store and the `taskemit dead` commands, against a real Redis."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from click.testing import CliRunner
from redis import asyncio as aioredis

from taskemit import Emitter, listener
from taskemit.cli import cli
from taskemit.monitor.deadletter import (
    get_dead_letter,
    iter_dead_letters,
    list_dead_letters,
    purge_dead_letters,
)
from taskemit.monitor.deadrecord import record_dead_letter
from taskemit.monitor.stats import outcome_args
from taskemit.settings import Settings
from taskemit.store.codec import get_codec

calls: list[int] = []


@listener("billing", max_tries=2, backoff=__import__("taskemit").Backoff.fixed(0.01))
async def charge(invoice: int) -> None:
    calls.append(invoice)
    raise RuntimeError(f"gateway down for invoice {invoice}")


async def bury(
    redis: aioredis.Redis, settings: Settings, n: int, listener_name: str = "app:l", event: str = "e"
) -> str:
    job_id = settings.keys.job_id(f"job{n:04d}")
    payload = get_codec("json").encode_job(
        listener_name, (n,), {"__taskemit__": {"event": f"u{n}", "event_id": event}}, enqueue_ms=1000
    )
    await record_dead_letter(
        redis,
        settings,
        job_id=job_id,
        listener=listener_name,
        event_uuid=f"u{n}",
        event_id=event,
        reason="attempts exhausted",
        payload=payload,
        error={"type": "E", "message": f"m{n}", "where": []},
        final_attempt=json.dumps({"attempt": 1, "status": "failed", "error": {"type": "E", "message": f"m{n}"}}),
        outcome="{}",
        enqueued_ms=1000,
        stats=outcome_args(settings.keys, listener_name, ["dead"], None),
    )
    await asyncio.sleep(0.001)  # distinct died_at scores
    return job_id


async def test_listing_is_paginated_newest_first(taskemit_settings: Settings, redis: aioredis.Redis) -> None:
    ids = [await bury(redis, taskemit_settings, n, "app:a" if n % 2 else "app:b") for n in range(25)]
    page = await list_dead_letters(redis, limit=10, space=taskemit_settings.keys)
    assert [d.job_id for d in page.items] == ids[::-1][:10]
    assert page.next_cursor == 10
    seen = [d.job_id async for d in iter_dead_letters(redis, page_size=7, space=taskemit_settings.keys)]
    assert seen == ids[::-1]
    odd = [
        d.job_id async for d in iter_dead_letters(redis, listener="app:a", page_size=4, space=taskemit_settings.keys)
    ]
    assert odd == [i for n, i in enumerate(ids) if n % 2][::-1]
    letter = await get_dead_letter(redis, ids[3], space=taskemit_settings.keys)
    assert letter is not None and letter.arguments() == ((3,), {}) and letter.attempts[0]["error"]["message"] == "m3"


async def test_expired_records_are_skipped_and_tidied(taskemit_settings: Settings, redis: aioredis.Redis) -> None:
    ids = [await bury(redis, taskemit_settings, n) for n in range(5)]
    await redis.delete(taskemit_settings.keys.dead(ids[2]))  # as if its TTL ran out
    page = await list_dead_letters(redis, limit=10, space=taskemit_settings.keys)
    assert [d.job_id for d in page.items] == [ids[4], ids[3], ids[1], ids[0]]
    assert await redis.zscore(taskemit_settings.keys.dead_index, ids[2]) is None


async def test_dead_letters_expire(taskemit_settings: Settings, redis: aioredis.Redis) -> None:
    settings = taskemit_settings.model_copy(update={"dead_letter_retention": 100})
    job_id = await bury(redis, settings, 1)
    assert 0 < await redis.ttl(taskemit_settings.keys.dead(job_id)) <= 100


async def test_purge(taskemit_settings: Settings, redis: aioredis.Redis) -> None:
    for n in range(130):
        await bury(redis, taskemit_settings, n, "app:a" if n < 100 else "app:b")
    assert await purge_dead_letters(redis, listener="app:b", space=taskemit_settings.keys) == 30
    assert await purge_dead_letters(redis, space=taskemit_settings.keys) == 100
    assert await redis.zcard(taskemit_settings.keys.dead_index) == 0


@pytest.fixture
def cli_env(taskemit_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("TASKEMIT_REDIS_URL", taskemit_settings.redis_url)
    monkeypatch.setenv("TASKEMIT_NAMESPACE", taskemit_settings.namespace)
    return taskemit_settings


def invoke(*args: str, input: str | None = None) -> Any:
    result = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
    return result


async def test_cli_list_show_replay_purge(cli_env: Settings, redis: aioredis.Redis) -> None:
    calls.clear()
    async with Emitter([charge], cli_env) as emitter:
        receipt = await emitter.publish("billing", 42)
    assert receipt is not None and calls == [42, 42]
    job_id = receipt.jobs[charge.name]

    listed = await asyncio.to_thread(invoke, "dead", "list", "--json")
    assert listed.exit_code == 0
    data = json.loads(listed.output)
    assert [item["job_id"] for item in data["items"]] == [job_id]
    assert data["items"][0]["attempts"] == 2 and data["next_cursor"] is None

    table = await asyncio.to_thread(invoke, "dead", "list", "--listener", charge.name)
    assert job_id in table.output and "gateway down for invoice 42" in table.output

    shown = await asyncio.to_thread(invoke, "dead", "show", job_id, "--json")
    detail = json.loads(shown.output)
    assert detail["arguments"] == {"args": [42], "kwargs": {}}
    assert [a["error"]["message"] for a in detail["attempts"]] == ["gateway down for invoice 42"] * 2
    human = await asyncio.to_thread(invoke, "dead", "show", job_id)
    assert "Attempts" in human.output and "RuntimeError" in human.output

    missing = await asyncio.to_thread(CliRunner().invoke, cli, ["dead", "show", "nope"])
    assert missing.exit_code == 4 and "no dead letter with job id 'nope'" in missing.output

    replayed = await asyncio.to_thread(invoke, "dead", "replay", job_id)
    assert replayed.exit_code == 0 and f"replayed {job_id} as " in replayed.output
    new_job_id = replayed.output.strip().rsplit(" ", 1)[1]
    assert await redis.zscore(cli_env.queue_key, new_job_id) is not None
    assert await get_dead_letter(redis, job_id, space=cli_env.keys) is None

    usage = await asyncio.to_thread(CliRunner().invoke, cli, ["dead", "replay"])
    assert usage.exit_code == 2 and "JOB_ID or --all" in usage.output

    for n in range(3):
        await bury(redis, cli_env, n)
    everything = await asyncio.to_thread(invoke, "dead", "replay", "--all", "--listener", "app:l")
    assert everything.output.count("replayed") == 3
    await bury(redis, cli_env, 9)
    refused = await asyncio.to_thread(CliRunner().invoke, cli, ["dead", "purge"], input="n\n")
    assert refused.exit_code == 1 and await redis.zcard(cli_env.keys.dead_index) == 1
    purged = await asyncio.to_thread(invoke, "dead", "purge", "--yes")
    assert "purged 1 dead letters" in purged.output and await redis.zcard(cli_env.keys.dead_index) == 0


async def test_letters_without_a_usable_payload_are_not_replayable(cli_env: Settings, redis: aioredis.Redis) -> None:
    from taskemit.errors import NotReplayable
    from taskemit.monitor.deadletter import replay_dead_letter

    for job_id, payload in (("expired1", b""), ("garbled1", b"\x00garbage")):
        await record_dead_letter(
            redis,
            cli_env,
            job_id=job_id,
            listener="<unknown>",
            event_uuid=None,
            event_id=None,
            reason="job expired" if not payload else "unable to deserialize job",
            payload=payload,
            error={"type": "E", "message": "m", "where": []},
            final_attempt="",
            outcome="{}",
            enqueued_ms=None,
            stats=outcome_args(cli_env.keys, "<unknown>", ["dead"], None),
        )
        with pytest.raises(NotReplayable, match=job_id):
            await replay_dead_letter(redis, cli_env, job_id)
        assert await get_dead_letter(redis, job_id, space=cli_env.keys) is not None  # still there to inspect
    one = await asyncio.to_thread(CliRunner().invoke, cli, ["dead", "replay", "expired1"])
    assert one.exit_code == 1 and "has no payload to replay (it died of: job expired)" in one.output
    everything = await asyncio.to_thread(CliRunner().invoke, cli, ["dead", "replay", "--all"])
    assert everything.exit_code == 0 and everything.output.count("skipped:") == 2


async def test_replay_goes_back_to_the_queue_the_job_died_on(cli_env: Settings, redis: aioredis.Redis) -> None:
    from taskemit.monitor.deadletter import replay_dead_letter

    job_id = await bury(redis, cli_env, 1)
    other_queue = cli_env.model_copy(update={"queue_name": "somewhere-else"})
    new_job_id = await replay_dead_letter(redis, other_queue, job_id)
    assert new_job_id is not None
    assert await redis.zscore(cli_env.queue_key, new_job_id) is not None
    assert await redis.zscore(other_queue.queue_key, new_job_id) is None
