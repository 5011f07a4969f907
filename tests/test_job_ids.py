"""Job ids name their event: a job that left nothing of its own in Redis (a first try that
succeeded, with arq's result copy off) is still found by its id, through its event's record,
by ``job_status``, ``taskemit status`` and the dashboard's API; ids of the old form (rows
spooled before ids named their event) still resolve through the job's own keys."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis import asyncio as aioredis

from taskemit import Emitter, JobState, listener
from taskemit.cli import cli
from taskemit.emit.durable import decode_pending, encode_pending
from taskemit.emit.fanout import Fanout
from taskemit.emit.registry import Registry
from taskemit.emit.spool import Spool
from taskemit.litestar import TaskEmitConfig, TaskEmitPlugin
from taskemit.monitor import get_dead_letter, job_status, replay_dead_letter
from taskemit.monitor.ids import resolve_id
from taskemit.settings import Settings
from taskemit.testing import InProcessWorker

lost = {"failing": True}


@listener("parcel_sent", name="ids:notify")
async def notify(parcel: int) -> str:
    return f"notified about parcel {parcel}"


@listener("parcel_sent", name="ids:bill")
async def bill(parcel: int) -> str:
    return f"billed parcel {parcel}"


@listener("parcel_lost", name="ids:claim", max_tries=1)
async def claim(parcel: int) -> str:
    if lost["failing"]:
        raise ConnectionError("the insurer is down")
    return f"claimed parcel {parcel}"


ALL = [notify, bill, claim]


@pytest.fixture
def settings(taskemit_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    lost["failing"] = True
    monkeypatch.setenv("TASKEMIT_REDIS_URL", taskemit_settings.redis_url)
    monkeypatch.setenv("TASKEMIT_NAMESPACE", taskemit_settings.namespace)
    settings = taskemit_settings.model_copy(update={"drain_on_exit": False})
    assert not settings.arq_results  # the default: no arq:result:<id> per finished job
    return settings


async def _leaves_no_trace_of_its_own(redis: aioredis.Redis, settings: Settings, job_id: str) -> bool:
    space = settings.keys
    return not await redis.exists(
        space.job(job_id), space.attempts(job_id), space.result(job_id), space.dead(job_id), space.retry(job_id)
    )


async def _cli_status(job_id: str) -> dict[str, Any]:
    shown = await asyncio.to_thread(CliRunner().invoke, cli, ["status", job_id, "--json"])
    assert shown.exit_code == 0, shown.output
    found: dict[str, Any] = json.loads(shown.output)
    return found


async def _api_job(settings: Settings, job_id: str) -> dict[str, Any]:
    config = TaskEmitConfig(
        listeners=ALL,
        settings=settings,
        dashboard_path="/taskemit",
        guards=[],
        csrf_secret="a test secret of thirty-two chars",
    )
    async with AsyncTestClient(Litestar([], plugins=[TaskEmitPlugin(config)])) as client:
        response = await client.get(f"/taskemit/api/jobs/{job_id}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def _found_everywhere(
    redis: aioredis.Redis, settings: Settings, job_id: str, listener_name: str, event_uuid: str
) -> None:
    """``job_id`` is found complete, with its listener and event, by each way of looking a job up."""
    job = await job_status(redis, settings, job_id)
    assert (job.listener, job.status, job.event_uuid) == (listener_name, JobState.COMPLETE, event_uuid)
    for found in (await _cli_status(job_id), await _api_job(settings, job_id)):
        assert (found["job_id"], found["listener"], found["status"], found["event_uuid"]) == (
            job_id,
            listener_name,
            "complete",
            event_uuid,
        )


async def test_a_job_that_succeeded_at_its_first_try_is_found_by_its_id(
    settings: Settings, redis: aioredis.Redis
) -> None:
    async with Emitter(ALL, settings) as emitter:
        receipt = await emitter.publish("parcel_sent", 7)
    assert receipt is not None
    # 8 characters match the event and its waiting jobs (their ids begin with its digits): the event
    assert await resolve_id(redis, settings, receipt.event_uuid[:8]) == receipt.event_uuid
    async with InProcessWorker(ALL, settings):
        await receipt.wait(timeout=20)
    assert len(set(receipt.jobs.values())) == 2, "the jobs of one event have distinct ids"
    for name, job_id in receipt.jobs.items():
        assert settings.keys.event_of_job(job_id) == receipt.event_uuid
        assert await _leaves_no_trace_of_its_own(redis, settings, job_id)
        await _found_everywhere(redis, settings, job_id, name, receipt.event_uuid)
        # shortened as the dashboard shows it: the event's first digits and the suffix
        token = job_id.removeprefix(settings.keys.prefix)
        assert await resolve_id(redis, settings, f"{token[:8]}…{token[32:]}") == job_id


async def test_publish_once_jobs_are_found_by_their_ids_and_the_same_in_any_registration_order(
    settings: Settings, redis: aioredis.Redis
) -> None:
    async with Emitter([bill, notify, claim], settings) as emitter:
        receipt = await emitter.publish_once("parcel-8", "parcel_sent", 8)
    assert receipt is not None
    async with InProcessWorker(ALL, settings):
        await receipt.wait(timeout=20)
    # another process, its listeners registered in another order, derives the same ids
    other = Fanout(Registry([notify, bill, claim]), settings, use_catalog=False)
    again = other.prepare("parcel_sent", (8,), {}, once_key="parcel-8")
    assert again is not None and (again.event_uuid, dict(again.jobs)) == (receipt.event_uuid, dict(receipt.jobs))
    assert len(set(receipt.jobs.values())) == 2
    for name, job_id in receipt.jobs.items():
        assert await _leaves_no_trace_of_its_own(redis, settings, job_id)
        await _found_everywhere(redis, settings, job_id, name, receipt.event_uuid)


async def test_a_replayed_dead_letters_new_job_is_found_by_its_id(settings: Settings, redis: aioredis.Redis) -> None:
    async with Emitter(ALL, settings) as emitter:
        receipt = await emitter.publish("parcel_lost", 9)
    assert receipt is not None
    dead_job = receipt.jobs["ids:claim"]
    async with InProcessWorker(ALL, settings):
        await receipt.wait(timeout=20)
        letter = await get_dead_letter(redis, dead_job, space=settings.keys)
        assert letter is not None and letter.event_uuid == receipt.event_uuid
        lost["failing"] = False
        new_job = await replay_dead_letter(redis, settings, dead_job)
        assert new_job is not None and new_job != dead_job
        assert settings.keys.event_of_job(new_job) == receipt.event_uuid
        await receipt.wait(timeout=20)
    await _found_everywhere(redis, settings, new_job, "ids:claim", receipt.event_uuid)


def test_ids_of_one_event_are_distinct_and_name_it(settings: Settings) -> None:
    space = settings.keys
    event_uuid, job_ids = space.new_event_ids(12)
    assert len(set(job_ids)) == 12 and {space.event_of_job(job_id) for job_id in job_ids} == {event_uuid}
    replays = {space.new_job_id(event_uuid) for _ in range(200)}
    assert len(replays) == 200 and not replays & set(job_ids)
    assert {space.event_of_job(job_id) for job_id in replays} == {event_uuid}
    names = [f"listener-{n}" for n in range(300)]
    once = space.once_job_ids(event_uuid, names)
    assert len(set(once.values())) == 300 and {space.event_of_job(job_id) for job_id in once.values()} == {event_uuid}
    assert space.once_job_ids(event_uuid, names[::-1]) == once


async def test_old_form_ids_of_a_spooled_row_still_resolve_through_the_jobs_keys(
    settings: Settings, redis: aioredis.Redis, tmp_path: Path
) -> None:
    spooling = settings.model_copy(update={"spool": True, "spool_dir": str(tmp_path)})
    pending = Fanout(Registry(ALL), spooling, use_catalog=False).prepare("parcel_sent", (10,), {})
    assert pending is not None
    row = json.loads(encode_pending(pending))
    # a row spooled before ids named their event: 32 random hex digits each
    row["jobs"] = {name: f"{settings.keys.prefix}{random.getrandbits(128):032x}" for name in row["jobs"]}
    old = decode_pending(json.dumps(row), spooling)
    spool = Spool(spooling)
    spool.add([old])
    spool.close()
    async with Emitter(ALL, spooling) as emitter:
        assert await emitter.flush_spool(timeout=20) == 0
    for name, job_id in old.jobs.items():
        assert settings.keys.event_of_job(job_id) is None
        job = await job_status(redis, settings, job_id)  # waiting: found through its payload
        assert (job.listener, job.status, job.event_uuid) == (name, JobState.QUEUED, old.event_uuid)


def test_the_dashboard_shows_the_jobs_of_one_event_apart() -> None:
    from taskemit.litestar.html import short_id

    event_hex = "0f0fa4261b2c4d3e8f405a6b7c8d9e0f"
    shown = {short_id(f"{{ns}}:{event_hex}.{k}") for k in range(3)}
    assert shown == {"0f0fa426….0", "0f0fa426….1", "0f0fa426….2"}
    assert short_id("{ns}:" + event_hex) == "0f0fa4261b2c…"  # an id of the old form
