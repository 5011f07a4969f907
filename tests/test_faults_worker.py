"""Workers under faults: fencing (a holder whose job was taken over is refused), round trips sent
again after a lost reply (applied once, the same jobs handed out), a worker that cannot renew its
leases (it gives the job up before another can claim it), Redis out of memory or failing over
mid-drain, and the bookkeeping of jobs stopped early. Real redis-servers, a real TCP proxy."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from proxy import TcpProxy
from redis import asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from topology import replica_of

from taskemit import Attempt, Emitter, listener
from taskemit.engine import InProcessWorker
from taskemit.engine.batch import Finished, JobStore, Route
from taskemit.engine.jobrun import ListenerRunner
from taskemit.engine.running import InFlight
from taskemit.settings import Settings, load_settings
from taskemit.store.codec import get_codec
from taskemit.store.redis_server import RedisServer

runs: Counter[str] = Counter()
timeline: list[tuple[str, float]] = []


@listener("fw_quick")
async def quick(n: int, attempt: Attempt) -> None:
    runs[attempt.job_id] += 1


@listener("fw_fails", max_tries=3)
async def fails(n: int) -> None:
    raise ValueError(f"no {n}")


@listener("fw_held", timeout=120)
async def held(n: int, attempt: Attempt) -> None:
    """The first attempt runs for a long time (until it is cancelled); later ones at once."""
    timeline.append((f"start {attempt.number}", time.monotonic()))
    if attempt.number == 1:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            timeline.append(("cancelled 1", time.monotonic()))
            raise
    timeline.append((f"done {attempt.number}", time.monotonic()))


@listener("fw_sync", timeout=120)
def sync_held(seconds: float, attempt: Attempt) -> str:
    timeline.append((f"start {attempt.number}", time.monotonic()))
    time.sleep(seconds if attempt.number == 1 else seconds * 0.75)
    timeline.append((f"done {attempt.number}", time.monotonic()))
    return f"attempt {attempt.number}"


@pytest.fixture(autouse=True)
def _fresh() -> None:
    runs.clear()
    timeline.clear()


@pytest.fixture
def settings(taskemit_settings: Settings) -> Settings:
    return taskemit_settings.model_copy(update={"drain_on_exit": False, "lease_ttl": 2.0})


def store_for(client: Any, settings: Settings, holder: str, *items: Any) -> JobStore:
    return JobStore(client, settings, get_codec("json"), [Route.of(item, settings) for item in items], holder)


async def attempt_of(settings: Settings, item: Any, claim: Any) -> Any:
    runner = ListenerRunner(item, settings, get_codec("json"))
    return await runner.run_payload(claim.job_id, claim.job_try, claim.payload, "test")


async def stats(client: aioredis.Redis, settings: Settings, name: str) -> dict[str, int]:
    raw = await client.hgetall(settings.keys.listener_stats(name))
    return {k.decode(): int(float(v)) for k, v in raw.items() if not k.startswith(b"le:")}


# -- fencing and sending again ----------------------------------------------------------------


async def test_a_worker_whose_job_was_taken_over_is_refused(settings: Settings, redis: aioredis.Redis) -> None:
    async with Emitter([quick], settings) as emitter:
        receipt = await emitter.publish("fw_quick", 1)
    assert receipt is not None
    first, second = store_for(redis, settings, "A", quick), store_for(redis, settings, "B", quick)
    (claim,) = (await first.exchange([], 10)).claimed
    outcome = await attempt_of(settings, quick, claim)
    await asyncio.sleep(settings.lease_ttl + 0.3)  # A's lease runs out (A was partitioned, say)
    (again,) = (await second.exchange([], 10)).claimed
    assert again.job_id == claim.job_id and again.job_try == 2 and again.token != claim.token
    refused = await first.exchange([Finished(outcome, 0, claim.token)], 0)
    assert refused.refused == {claim.job_id: "taken"}
    assert await redis.exists(settings.keys.job(claim.job_id))  # B still holds it
    lost, _, _ = await first.renew([(claim.job_id, 0, claim.token)])
    assert lost == [claim.job_id]
    assert await first.release([(claim.job_id, 0, claim.token)]) == 0
    assert (await redis.get(settings.keys.in_progress(claim.job_id))).decode() == again.token
    counted = await stats(redis, settings, quick.name)
    assert counted.get("fenced") == 1 and "succeeded" not in counted
    applied = await second.exchange([Finished(await attempt_of(settings, quick, again), 0, again.token)], 0)
    assert applied.refused == {}
    assert (await stats(redis, settings, quick.name))["succeeded"] == 1
    assert not await redis.exists(settings.keys.job(claim.job_id))


async def test_a_finish_sent_twice_is_applied_once(settings: Settings, redis: aioredis.Redis) -> None:
    async with Emitter([fails], settings) as emitter:
        await emitter.publish("fw_fails", 1)
    store = store_for(redis, settings, "A", fails)
    (claim,) = (await store.exchange([], 10)).claimed
    outcome = await attempt_of(settings, fails, claim)  # a retry
    first = await store.exchange([Finished(outcome, 0, claim.token)], 0)
    assert first.refused == {}
    second = await store.exchange([Finished(outcome, 0, claim.token)], 0)  # its reply was lost, say
    assert second.refused == {claim.job_id: "gone"}
    space = settings.keys
    assert int(await redis.get(space.retry(claim.job_id))) == 1  # the try counted once
    assert await redis.llen(space.attempts(claim.job_id)) == 1
    assert await stats(redis, settings, fails.name) == {
        "failed": 1,
        "retried": 1,
        "duration_sum": 0,
        "duration_count": 1,
    }
    assert await redis.zcard(Route.of(fails, settings).ready) == 1


async def test_a_lapsed_lease_nobody_took_still_settles(settings: Settings, redis: aioredis.Redis) -> None:
    async with Emitter([quick], settings) as emitter:
        await emitter.publish("fw_quick", 1)
    store = store_for(redis, settings, "A", quick)
    (claim,) = (await store.exchange([], 10)).claimed
    outcome = await attempt_of(settings, quick, claim)
    await asyncio.sleep(settings.lease_ttl + 0.3)  # lapsed, but no claim came by
    batch = await store.exchange([Finished(outcome, 0, claim.token)], 0)
    assert batch.refused == {}
    assert not await redis.exists(settings.keys.job(claim.job_id))
    assert (await stats(redis, settings, quick.name))["succeeded"] == 1


async def test_a_claim_whose_reply_was_lost_hands_out_the_same_jobs(settings: Settings, redis: aioredis.Redis) -> None:
    port = redis.connection_pool.connection_kwargs["port"]
    async with Emitter([quick], settings) as emitter:
        for n in range(3):
            await emitter.publish("fw_quick", n)
    with TcpProxy(port) as endpoint:
        proxied = load_settings(
            redis_url=f"redis://127.0.0.1:{endpoint.port}/0", namespace=settings.namespace, lease_ttl=2.0
        )
        client = aioredis.Redis(port=endpoint.port)
        store = store_for(client, proxied, "A", quick)
        await store.load_scripts()  # (else the lost reply may be the one that says they are not loaded)
        endpoint.lose_next_reply()
        with pytest.raises(RedisConnectionError):
            await store.exchange([], 10)
        held = await redis.zcard(Route.of(quick, settings).leased)
        assert held == 3  # the claim ran: three leases
        leased = sorted(m.decode() for m in await redis.zrange(Route.of(quick, settings).leased, 0, -1))
        batch = await store.exchange([], 10)  # sent again, with the same token
        assert sorted(c.job_id for c in batch.claimed) == leased
        assert all(c.job_try == 1 for c in batch.claimed)  # nothing counted as a try that ran
        assert len({c.token for c in batch.claimed}) == 1
        nothing_more = await store.exchange([], 10)
        assert nothing_more.claimed == []
        await client.aclose()


async def test_a_claim_sent_again_hands_out_the_same_claimed_expired_and_aborted_jobs(
    settings: Settings, redis: aioredis.Redis
) -> None:
    """Two listeners' jobs in one claim, one of them expired in the queue and one whose abort was
    asked for: the claim sent again after a lost reply hands each out again as what it was."""
    port = redis.connection_pool.connection_kwargs["port"]
    async with Emitter([quick, fails], settings) as emitter:
        for n in range(3):
            await emitter.publish("fw_quick", n)
            await emitter.publish("fw_fails", n)
    quick_ids = [m.decode() for m in await redis.zrange(Route.of(quick, settings).ready, 0, -1)]
    fails_ids = [m.decode() for m in await redis.zrange(Route.of(fails, settings).ready, 0, -1)]
    gone, stopped = quick_ids[0], fails_ids[1]
    await redis.delete(settings.keys.job(gone))  # its payload expired while it waited
    await redis.zadd(settings.keys.abort_requests, {stopped: time.time() * 1000})
    with TcpProxy(port) as endpoint:
        proxied = load_settings(
            redis_url=f"redis://127.0.0.1:{endpoint.port}/0", namespace=settings.namespace, lease_ttl=2.0
        )
        client = aioredis.Redis(port=endpoint.port)
        store = store_for(client, proxied, "A", quick, fails)
        await store.load_scripts()
        endpoint.lose_next_reply()
        with pytest.raises(RedisConnectionError):
            await store.exchange([], 10)
        batch = await store.exchange([], 10)  # sent again, with the same token
        assert [c.job_id for c in batch.expired] == [gone]
        assert [c.job_id for c in batch.aborted] == [stopped]
        assert sorted(c.job_id for c in batch.claimed) == sorted({*quick_ids, *fails_ids} - {gone, stopped})
        assert {c.route for c in batch.claimed} == {0, 1}  # each with its own listener
        assert (await store.exchange([], 10)).claimed == []
        await client.aclose()


# -- a worker that cannot keep its leases ---------------------------------------------------------


@pytest.fixture
def proxied(settings: Settings, redis: aioredis.Redis) -> Iterator[tuple[TcpProxy, Settings]]:
    port = redis.connection_pool.connection_kwargs["port"]
    with TcpProxy(port) as endpoint:
        yield endpoint, settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{endpoint.port}/0"})


async def until(check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {check}"
        await asyncio.sleep(0.02)


def when(what: str) -> float | None:
    return next((at for name, at in timeline if name == what), None)


async def test_a_partitioned_worker_stops_its_listener_before_another_can_start_it(
    settings: Settings, proxied: tuple[TcpProxy, Settings]
) -> None:
    endpoint, behind = proxied
    async with Emitter([held], settings) as emitter:
        await emitter.publish("fw_held", 1)
    async with InProcessWorker([held], behind, grace=1) as cut_off:
        await until(lambda: when("start 1") is not None)
        endpoint.pause()  # its renewals go nowhere
        async with InProcessWorker([held], settings):
            await until(lambda: when("done 2") is not None)
        cancelled, second = when("cancelled 1"), when("start 2")
        assert cancelled is not None and second is not None
        assert cancelled < second  # never both at once
        assert cut_off.engine.jobs.leases_lost == 1 and cut_off.running
        endpoint.resume()


async def test_a_partitioned_sync_listener_runs_out_but_its_outcome_is_thrown_away(
    settings: Settings, redis: aioredis.Redis, proxied: tuple[TcpProxy, Settings]
) -> None:
    endpoint, behind = proxied
    async with Emitter([sync_held], settings) as emitter:
        receipt = await emitter.publish("fw_sync", 4.0)
    assert receipt is not None
    async with InProcessWorker([sync_held], behind, grace=10) as cut_off:
        await until(lambda: when("start 1") is not None)
        endpoint.pause()
        async with InProcessWorker([sync_held], settings):
            await until(lambda: when("start 2") is not None)
            endpoint.resume()
            await until(lambda: when("done 1") is not None)  # while the second run holds the job
            await asyncio.sleep(0.5)  # the first worker's next round trip, had it kept the outcome
            await until(lambda: when("done 2") is not None)
        assert cut_off.engine.jobs.leases_lost == 1
        assert cut_off.engine.fenced == 0  # it did not even try to write it (it would be refused)
    counted = await stats(redis, settings, sync_held.name)
    assert counted["succeeded"] == 1 and "fenced" not in counted


# -- stopping ------------------------------------------------------------------------------------


async def test_a_job_cancelled_before_it_started_is_given_back(settings: Settings, redis: aioredis.Redis) -> None:
    async with Emitter([quick], settings) as emitter:
        await emitter.publish("fw_quick", 1)
    store = store_for(redis, settings, "A", quick)
    (claim,) = (await store.exchange([], 10)).claimed
    ended: list[object] = []
    jobs = InFlight(
        "A", store.routes, [ListenerRunner(quick, settings, get_codec("json"))], Counter(), 2.0, ended.append
    )
    jobs.start(claim, time.monotonic())
    (task,) = jobs.cancel_all()  # before the task ran a single step
    await asyncio.wait([task])
    assert jobs.running == {} and ended == [None]
    assert jobs.interrupted == [(claim.job_id, 0, claim.token)]
    assert await store.release(jobs.interrupted) == 1
    assert runs == Counter()


async def test_a_sync_listener_past_the_grace_keeps_its_lease_until_its_thread_returns(
    settings: Settings, redis: aioredis.Redis
) -> None:
    async with Emitter([sync_held], settings) as emitter:
        receipt = await emitter.publish("fw_sync", 2.5)
    assert receipt is not None
    (job_id,) = receipt.jobs.values()
    worker = InProcessWorker([sync_held], settings, grace=0.3)
    await worker.__aenter__()
    await until(lambda: when("start 1") is not None)
    closing = asyncio.create_task(worker.close())
    await asyncio.sleep(1.2)  # past the grace, the thread still runs
    assert await redis.exists(settings.keys.in_progress(job_id)), "given back while its thread ran"
    await closing
    assert when("done 1") is not None and when("start 2") is None
    status = await redis.hget(settings.keys.event(receipt.event_uuid), f"job:{job_id}")
    assert status is not None and b'"complete"' in status


# -- Redis out of memory, and failing over, while a worker drains ---------------------------------


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as started:
        yield started


def own_settings(url: str, tmp_path: Path) -> Settings:
    return load_settings(redis_url=url, namespace="drain", spool_dir=str(tmp_path / "spool"), lease_ttl=3.0)


async def test_a_worker_drains_while_redis_refuses_new_data(server: RedisServer, tmp_path: Path) -> None:
    settings = own_settings(server.url, tmp_path)
    async with Emitter([quick], settings) as emitter:
        ids = [job for n in range(200) for job in (await emitter.publish("fw_quick", n)).jobs.values()]  # type: ignore[union-attr]
    client = redis.Redis(port=server.port)
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", int(client.info("memory")["used_memory"]) - 1024)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        client.set("probe", "x")
    async with InProcessWorker([quick], settings):
        await until(lambda: sum(runs.values()) == 200)
        await until(lambda: client.zcard(settings.queue_key) == 0)
    assert set(runs) == set(ids) and set(runs.values()) == {1}


async def test_a_worker_follows_a_failover_of_its_endpoint(server: RedisServer, tmp_path: Path) -> None:
    """FAILOVER swaps primary and replica (the old one answers READONLY) while the endpoint moves."""
    replica = replica_of(server)
    try:
        with TcpProxy(server.port) as endpoint:
            settings = own_settings(f"redis://127.0.0.1:{endpoint.port}/0", tmp_path)
            async with Emitter([quick], settings) as emitter:
                ids = [j for n in range(300) for j in (await emitter.publish("fw_quick", n)).jobs.values()]  # type: ignore[union-attr]
            async with InProcessWorker([quick], settings, max_jobs=5):
                await until(lambda: sum(runs.values()) >= 50)
                redis.Redis(port=server.port).execute_command("FAILOVER")
                endpoint.retarget(replica.port)
                await until(lambda: sum(runs.values()) >= 300, timeout=30)
                await until(lambda: redis.Redis(port=replica.port).zcard(settings.queue_key) == 0)
            assert set(runs) == set(ids) and set(runs.values()) == {1}
            assert redis.Redis(port=replica.port).info("replication")["role"] == "master"
    finally:
        replica.stop()
