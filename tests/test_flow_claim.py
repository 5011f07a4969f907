"""Flow control in the claim, with in-process workers on a real Redis: ordering by key (retries
hold the key, dead jobs hold it or pass), concurrency across workers, rates with and without
keys (the worker wakes at the next token, not by polling), priorities, the newest declaration.

The same guarantees with worker processes, crashes and timings: tests/test_flow_processes.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Any

import pytest
from redis import asyncio as aioredis

from taskemit import Attempt, Emitter, Retry, listener
from taskemit.engine import InProcessWorker
from taskemit.monitor import abort_job, event_status, list_dead_letters, purge_dead_letters, replay_dead_letter
from taskemit.monitor.catalog import read_catalog
from taskemit.settings import Settings

log: list[tuple[str, Any, float]] = []
fail_first: defaultdict[str, int] = defaultdict(int)


@pytest.fixture(autouse=True)
def _reset() -> None:
    log.clear()
    fail_first.clear()


@pytest.fixture
def settings(taskemit_settings: Settings) -> Settings:
    # no polling to fall back on: what the claim reports must wake the workers
    return taskemit_settings.model_copy(update={"drain_on_exit": False, "idle_poll": 30.0})


@listener("order_changed", ordered_by="order_id", backoff=None)
async def apply_change(order_id: str, n: int, attempt: Attempt) -> None:
    log.append(("start", (order_id, n), time.monotonic()))
    await asyncio.sleep(0.01)
    if fail_first[f"{order_id}:{n}"] >= attempt.number:
        log.append(("failed", (order_id, n), time.monotonic()))
        raise Retry(after=0.05)
    log.append(("end", (order_id, n), time.monotonic()))


@listener("ledger", ordered_by="account", max_tries=1)
async def post_strict(account: str, n: int) -> None:
    log.append(("start", (account, n), time.monotonic()))
    if n == 0:
        raise ValueError("rejected")


@listener("ledger", ordered_by="account", max_tries=1, pass_dead=True)
async def post_passing(account: str, n: int) -> None:
    log.append(("pass", (account, n), time.monotonic()))
    if n == 0:
        raise ValueError("rejected")


@listener("report", concurrency=2)
async def build_report(n: int) -> None:
    log.append(("start", n, time.monotonic()))
    await asyncio.sleep(0.05)
    log.append(("end", n, time.monotonic()))


@listener("ping", rate="20/s")
async def ping(n: int) -> None:
    log.append(("start", n, time.monotonic()))


@listener("mail", rate="5/s", rate_key="tenant")
async def send_mail(tenant: str, n: int) -> None:
    log.append(("start", (tenant, n), time.monotonic()))


@listener("job", priority=0)
async def low(n: int) -> None:
    log.append(("low", n, time.monotonic()))
    await asyncio.sleep(0.005)


@listener("urgent", priority=10)
async def high(n: int) -> None:
    log.append(("high", n, time.monotonic()))


def starts(kind: str = "start") -> list[Any]:
    return [what for event, what, _ in log if event == kind]


async def until(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not done after {timeout}s: {log[-5:]}"
        await asyncio.sleep(0.01)


async def test_jobs_of_one_key_run_one_at_a_time_in_emit_order(settings: Settings) -> None:
    async with Emitter([apply_change], settings) as emitter:
        for n in range(6):
            for order in ("a", "b", "c"):
                emitter.emit("order_changed", order_id=order, n=n)
    async with (
        InProcessWorker([apply_change], settings, concurrency=10),
        InProcessWorker([apply_change], settings, concurrency=10),
    ):
        await until(lambda: len(starts("end")) == 18)
    for order in ("a", "b", "c"):
        events = [(event, n) for event, (key, n), _ in log if key == order]
        assert events == [(event, n) for n in range(6) for event in ("start", "end")]  # one at a time, in order
    first = {key: at for event, (key, n), at in log if event == "start" and n == 0}
    ends = {key: at for event, (key, n), at in log if event == "end" and n == 0}
    assert max(first.values()) < min(ends.values())  # the keys ran side by side


async def test_a_retrying_job_holds_its_key(settings: Settings, redis: aioredis.Redis) -> None:
    fail_first["a:0"] = 2  # the first job of a fails twice, then succeeds
    async with Emitter([apply_change], settings) as emitter:
        for n in range(3):
            emitter.emit("order_changed", order_id="a", n=n)
        emitter.emit("order_changed", order_id="b", n=0)
    async with InProcessWorker([apply_change], settings, concurrency=10):
        await until(lambda: len(starts("end")) == 4)
    a = [(event, n) for event, (key, n), _ in log if key == "a"]
    assert a == [("start", 0), ("failed", 0), ("start", 0), ("failed", 0), ("start", 0), ("end", 0)] + [
        (event, n) for n in (1, 2) for event in ("start", "end")
    ]
    b_start = next(at for event, (key, _), at in log if key == "b")
    assert b_start < next(at for event, (key, n), at in log if key == "a" and event == "failed")
    assert await redis.exists(settings.keys.flow_jobs(apply_change.name)) == 0  # nothing left behind
    assert await redis.zcard(settings.keys.flow_keys(apply_change.name)) == 0


async def test_a_dead_job_holds_its_key_until_replayed_or_purged(settings: Settings, redis: aioredis.Redis) -> None:
    async with Emitter([post_strict, post_passing], settings) as emitter:
        for n in range(3):
            emitter.emit("ledger", account="x", n=n)
    async with InProcessWorker([post_strict, post_passing], settings, concurrency=10):
        # pass_dead: the later jobs go on past the dead one
        await until(lambda: starts("pass") == [("x", 0), ("x", 1), ("x", 2)])
        await until(lambda: starts() == [("x", 0)])
        await asyncio.sleep(0.3)
        assert starts() == [("x", 0)]  # held: 1 and 2 wait behind the dead job
        keys = await redis.zrange(settings.keys.flow_keys(post_strict.name), 0, -1, withscores=True)
        assert keys == [(b"x", 3.0)]
        (letter,) = [d for d in (await list_dead_letters(redis, space=settings.keys)).items if "strict" in d.listener]
        new_job = await replay_dead_letter(redis, settings, letter.job_id)  # replayed: it runs first, and fails again
        assert new_job is not None
        await until(lambda: starts() == [("x", 0), ("x", 0)])
        await asyncio.sleep(0.3)
        assert starts() == [("x", 0), ("x", 0)]  # still held, by the replayed job now
        (letter,) = [d for d in (await list_dead_letters(redis, space=settings.keys)).items if "strict" in d.listener]
        assert letter.job_id == new_job
        assert await purge_dead_letters(redis, listener=post_strict.name, space=settings.keys) == 1
        await until(lambda: starts() == [("x", 0), ("x", 0), ("x", 1), ("x", 2)])  # purged: the key goes on
    assert await redis.zcard(settings.keys.flow_keys(post_strict.name)) == 0


async def test_a_waiting_job_aborted_leaves_its_key(settings: Settings, redis: aioredis.Redis) -> None:
    fail_first["a:0"] = 1
    async with Emitter([apply_change], settings) as emitter:
        receipts = [await emitter.publish("order_changed", order_id="a", n=n) for n in range(3)]
    assert all(receipts)
    middle = receipts[1].jobs[apply_change.name]  # type: ignore[union-attr]
    assert await abort_job(redis, settings, middle) == "aborted"
    first = receipts[0].jobs[apply_change.name]  # type: ignore[union-attr]
    assert await abort_job(redis, settings, first) == "aborted"  # the first, ready: the next one is now
    async with InProcessWorker([apply_change], settings, concurrency=10):
        await until(lambda: starts("end") == [("a", 2)])
    status = await event_status(redis, settings, receipts[2].event_uuid)  # type: ignore[union-attr]
    assert status is not None and status.status == "complete"
    assert starts() == [("a", 2)]


async def test_concurrency_holds_across_workers_and_frees_slots_at_once(settings: Settings) -> None:
    async with Emitter([build_report], settings) as emitter:
        for n in range(12):
            emitter.emit("report", n=n)
    async with (
        InProcessWorker([build_report], settings, concurrency=10),
        InProcessWorker([build_report], settings, concurrency=10),
    ):
        await until(lambda: len(starts("end")) == 12)
    running = peak = 0
    for event, _, _ in sorted(log, key=lambda item: (item[2], item[0] == "start")):
        running += 1 if event == "start" else -1
        peak = max(peak, running)
    assert peak == 2
    first, last = log[0][2], log[-1][2]
    assert last - first < 12 / 2 * 0.05 * 3  # no slot waited for a poll (idle_poll is 30 s)


async def test_a_rate_spaces_starts_and_wakes_the_worker_at_the_next_token(settings: Settings) -> None:
    async with Emitter([ping], settings) as emitter:
        for n in range(10):
            emitter.emit("ping", n=n)
    started = time.monotonic()
    async with InProcessWorker([ping], settings, concurrency=10):
        await until(lambda: len(starts()) == 10)
    times = sorted(at for _, _, at in log)
    # 20/s, burst 1: the i-th start comes 50 ms x i after the first at the earliest; counted from
    # the first, with two tokens' slack (a start the loaded machine ran late, the first above all,
    # does not make a later one early), where no rate would start all ten at once
    assert all(at - times[0] >= 0.05 * i - 0.1 for i, at in enumerate(times)), times
    assert times[-1] - started < 15  # woken at each token, not at the 30 s poll


async def test_a_rate_key_gives_each_value_its_own_bucket(settings: Settings) -> None:
    async with Emitter([send_mail], settings) as emitter:
        for n in range(5):
            emitter.emit("mail", tenant="big", n=n)
        for n in range(3):
            emitter.emit("mail", tenant="small", n=n)
    async with InProcessWorker([send_mail], settings, concurrency=10):
        await until(lambda: len(starts()) == 8)
    by_tenant: defaultdict[str, list[float]] = defaultdict(list)
    for _, (tenant, _), at in log:
        by_tenant[tenant].append(at)
    for times in by_tenant.values():
        # 5/s each: the i-th start of a tenant comes i/5 s after its first at the earliest (counted
        # from the first, so a start the loaded machine ran late does not shorten the next gap)
        assert all(at - times[0] >= 0.2 * i - 0.05 for i, at in enumerate(times))
    assert by_tenant["small"][0] < by_tenant["big"][1]  # small did not wait behind big


async def test_higher_priority_goes_first(settings: Settings) -> None:
    async with Emitter([low, high], settings) as emitter:
        for n in range(30):
            emitter.emit("job", n=n)
        for n in range(3):
            emitter.emit("urgent", n=n)
        await emitter.publish("job", n=100, priority=20)  # the emit's own priority
    async with InProcessWorker([low, high], settings, concurrency=1):
        await until(lambda: len(log) == 34)
    order = [(kind, n) for kind, n, _ in log]
    assert order[0] == ("low", 100)  # priority 20, then the listener of priority 10, then 0
    assert sorted(order[1:4]) == [("high", 0), ("high", 1), ("high", 2)]
    assert sorted(order[4:]) == [("low", n) for n in range(30)]


async def test_the_newest_declaration_applies_and_the_older_worker_warns(
    settings: Settings, redis: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    @listener("report", name="reports", concurrency=5)
    async def old(n: int) -> None: ...

    @listener("report", name="reports", concurrency=2, rate="10/s")
    async def new(n: int) -> None: ...

    caplog.set_level(logging.WARNING, "taskemit.worker")
    async with InProcessWorker([old], settings) as first:
        await until(lambda: first.engine.declarations is not None)
        await asyncio.sleep(0.3)
        async with InProcessWorker([new], settings):
            await asyncio.sleep(0.3)
            flow = await redis.hgetall(settings.keys.flow("reports"))
            assert flow[b"concurrency"] == b"2" and flow[b"rate_count"] == b"10"
            await first.engine.declarations.declare(redis, settings.keys, 15, 3600)  # its next heartbeat
            assert (await read_catalog(redis, space=settings.keys))["reports"].flow.concurrency == 2
    assert await redis.hget(settings.keys.flow("reports"), "concurrency") == b"2"
    text = caplog.text
    assert "replaces the one worker" in text and "2 at once, 10/s (burst 1)" in text
    assert "(started later) declares its flow control as 2 at once" in text


@listener("vip_retry", priority=10, backoff=None)
async def retry_later(attempt: Attempt) -> None:
    log.append(("try", attempt.number, time.monotonic()))
    if attempt.number == 1:
        raise Retry(after=0.4)


async def test_a_retry_with_a_priority_waits_for_its_time_then_keeps_its_place(
    settings: Settings, redis: aioredis.Redis
) -> None:
    """Its place among due jobs is ten minutes ahead (priority 10 x 60 s); its run time is not."""
    async with Emitter([retry_later, low], settings) as emitter:
        for n in range(150):
            emitter.emit("job", n=n)
        await emitter.publish("vip_retry")
    async with InProcessWorker([retry_later, low], settings, concurrency=1):
        await until(lambda: len(log) == 152)
        delayed = settings.keys.delayed(settings.queue_key, retry_later.name)
        assert await redis.zcard(delayed) == 0  # it went through the delayed set, and left it
    tries = [at for kind, _, at in log if kind == "try"]
    lows = [at for kind, _, at in log if kind == "low"]
    assert tries[0] < lows[0]  # first, by its priority
    assert tries[1] - tries[0] >= 0.35  # not before its backoff was over
    assert tries[1] < lows[-1]  # then ahead of the jobs due before it


async def test_a_claim_sent_again_takes_no_more_tokens(settings: Settings, redis: aioredis.Redis) -> None:
    from taskemit.emit.catalog import describe
    from taskemit.engine.batch import JobStore, Route
    from taskemit.engine.limits import FlowDeclarations
    from taskemit.store.codec import get_codec

    async with Emitter([ping], settings) as emitter:
        for n in range(3):
            emitter.emit("ping", n=n)
    await FlowDeclarations([describe(ping, settings.queue_name)], "test", time.time()).declare(
        redis, settings.keys, 15, 3600
    )
    store = JobStore(redis, settings, get_codec("json"), [Route.of(ping, settings)], "A")
    await store.load_scripts()
    first = await store.exchange([], 10)
    assert len(first.claimed) == 1  # 20/s, burst 1: one token
    tokens = await redis.hget(settings.keys.flow(ping.name), "tokens")
    store._unanswered = first.claimed[0].token  # its reply was lost: sent again with the same token
    again = await store.exchange([], 10)
    assert [c.job_id for c in again.claimed] == [c.job_id for c in first.claimed]
    assert await redis.hget(settings.keys.flow(ping.name), "tokens") == tokens
    assert again.next_due is not None and again.next_due - time.time() < 0.06  # the next token


async def test_a_dispatcher_orders_by_the_key_the_catalog_declares(settings: Settings, redis: aioredis.Redis) -> None:
    """An Emitter() without the listeners' code reads ordered_by from the catalog."""
    async with InProcessWorker([apply_change], settings, concurrency=10) as worker:
        await until(lambda: worker.engine.declarations is not None)
        await asyncio.sleep(0.2)  # registered
        async with Emitter(settings=settings) as dispatcher:
            for n in range(4):
                for order in ("a", "b"):
                    dispatcher.emit("order_changed", order_id=order, n=n)
        await until(lambda: len(starts("end")) == 8)
    for order in ("a", "b"):
        assert [(event, n) for event, (key, n), _ in log if key == order] == [
            (event, n) for n in range(4) for event in ("start", "end")
        ]


def test_a_spooled_or_outbox_event_keeps_its_jobs_flow_control(settings: Settings) -> None:
    from taskemit.emit.durable import decode_pending, encode_pending
    from taskemit.emit.fanout import Fanout
    from taskemit.emit.registry import Registry

    fanout = Fanout(Registry([apply_change, high]), settings, use_catalog=False)
    pending = fanout.prepare("order_changed", (), {"order_id": "a", "n": 1}, priority=3)
    assert pending is not None and pending.flows is not None
    assert pending.flows[0].endswith("\n180000\nO\na\n")  # priority 3 x 60 s; ordered by "a", holding on death
    back = decode_pending(encode_pending(pending), settings)
    assert back.flows == pending.flows
    plain = fanout.prepare("urgent", (), {"n": 1})
    assert plain is not None and plain.flows is None and plain.plan.routes[0].flow.endswith("\n600000\n\n\n")
    assert decode_pending(encode_pending(plain), settings).plan.routes[0].flow == plain.plan.routes[0].flow


@listener("export", concurrency=1)
async def export(n: int) -> None:
    log.append(("export", n, time.monotonic()))
    await asyncio.sleep(0.1)
    log.append(("exported", n, time.monotonic()))


@listener("archive", priority=1)  # goes before the exports in A's claims
async def archive(n: int) -> None:
    log.append(("archive", n, time.monotonic()))
    await asyncio.sleep(1.0)
    log.append(("archived", n, time.monotonic()))


async def test_a_freed_slot_wakes_a_worker_that_was_turned_away(settings: Settings) -> None:
    """A frees the export slot but fills its own with an older archive job: its claim wakes B,
    whom the limit turned away (no poll for 30 s would)."""
    async with Emitter([export, archive], settings) as emitter:
        await emitter.publish("export", n=1)
        async with InProcessWorker([export, archive], settings, concurrency=1):
            await until(lambda: starts("export") == [1])
            for n in range(3):
                await emitter.publish("archive", n=n)
            for n in range(2, 4):
                await emitter.publish("export", n=n)
            async with InProcessWorker([export], settings, concurrency=5):
                await asyncio.sleep(0.05)  # B's first claim: the slot is A's
                await until(lambda: len(starts("exported")) == 3 and starts("archived"), timeout=30)
    at = {(event, n): when for event, n, when in log}
    first = starts("archive")[0]  # the archive jobs' places tie: A takes any of them first
    assert at[("exported", 1)] <= at[("archive", first)]  # A took an archive job in the slot's place
    assert at[("export", 2)] < at[("archived", first)]  # so B ran export 2, while A archived
    assert at[("export", 2)] - at[("exported", 1)] < 10  # woken, not polled (30 s)


@listener("bulk")
async def bulk(n: int) -> None:
    log.append(("bulk", n, time.monotonic()))
    await asyncio.sleep(0.002)


@listener("chat")
async def chat(n: int) -> None:
    log.append(("chat", n, time.monotonic()))


async def test_without_priorities_listeners_take_turns_whatever_their_backlog(settings: Settings) -> None:
    """Places are compared across listeners only when a due job has a priority: a backlog of one
    listener does not hold another's newer jobs back."""
    async with Emitter([bulk, chat], settings) as emitter:
        for n in range(60):
            emitter.emit("bulk", n=n)
        await asyncio.sleep(0.05)  # the chats come later
        for n in range(5):
            await emitter.publish("chat", n=n)
    async with InProcessWorker([bulk, chat], settings, concurrency=2):
        await until(lambda: len(log) == 65)
    order = [kind for kind, _, _ in log]
    assert order.index("chat") < 20 and len(order) - order[::-1].index("chat") < 40  # in turn, not after all bulk
