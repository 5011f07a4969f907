"""The history: workers' tallies in time buckets, the gauges' samples, reading them back, how long
the buckets live, and that the history outlives the worker processes that wrote it."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import proc_listeners
import pytest
from arq_support import HAVE_ARQ, needs_arq
from children import child_env
from redis import asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from taskemit import Emitter, listener, worker_settings
from taskemit.engine import InProcessWorker
from taskemit.engine.history import HistoryRecorder
from taskemit.errors import InvalidArgument
from taskemit.monitor import read_history, read_listener_stats, sample_if_due
from taskemit.monitor.history import Gauges, HistoryTally, claim_sample, history_call, write_history
from taskemit.monitor.series import SPANS
from taskemit.settings import Settings

if HAVE_ARQ:
    from arq.worker import create_worker
from taskemit.store.redis_server import free_port


@listener("hist_event", name="hist:ok")
async def ok(n: int) -> None: ...


@listener("hist_event", name="hist:flaky", max_tries=1)
async def flaky(n: int) -> None:
    if n % 10 == 0:
        raise ConnectionRefusedError(f"refused order {n}")


@listener("hist_parked", name="hist:parked", queue="parked")  # no worker serves this queue
async def parked(n: int) -> None: ...


@pytest.fixture
def settings(taskemit_settings: Settings) -> Settings:
    return taskemit_settings.model_copy(update={"drain_on_exit": False, "history_interval": 1.0})


# -- the tally and the write call (no Redis) ---------------------------------------------------


def test_a_tally_counts_per_minute_and_listener_and_adds_each_minute_to_three_buckets(settings: Settings) -> None:
    tally = HistoryTally()
    t = 1_800_000_000.0  # a whole hour: minute, 5 minutes and hour buckets start together
    tally.add("a", ("succeeded",), t + 5, 0.003, 0.02)
    tally.add("a", ("succeeded",), t + 59.9, 0.004, None)
    tally.add("a", ("failed", "retried"), t + 60.1, 0.2, 0.5, "builtins.ValueError", "bad " * 100)
    tally.add("b", ("dead",), t + 61, None, None, "taskemit.errors.JobPayloadError", "expired")
    minutes = {(minute, name): dict(counts) for minute, name, counts, _ in tally.minutes()}
    assert minutes[(int(t), "a")] == {"ok": 2, "rt0.005": 2, "lat0.025": 1}
    assert minutes[(int(t) + 60, "a")] == {
        "fail": 1,
        "retry": 1,
        "rt0.25": 1,
        "lat0.5": 1,
        "err=builtins.ValueError": 1,
    }
    assert minutes[(int(t) + 60, "b")] == {"dead": 1, "err=taskemit.errors.JobPayloadError": 1}

    keys, args = history_call(settings, tally)
    space = settings.keys
    assert keys == [space.history("1m", int(t)), space.history("5m", int(t)), space.history("1h", int(t)),
                    space.history("1m", int(t) + 60)]  # fmt: skip
    # each bucket expires its resolution's retention after it ends
    sections = _sections(keys, args)
    assert sections[space.history("1m", int(t))]["expire_at"] == int(t) + 60 + settings.history_minute_retention
    assert sections[space.history("5m", int(t))]["expire_at"] == int(t) + 300 + settings.history_five_minute_retention
    assert sections[space.history("1h", int(t))]["expire_at"] == int(t) + 3600 + settings.history_hour_retention
    hour = sections[space.history("1h", int(t))]
    assert hour["incr"]["ok:a"] == 2 and hour["incr"]["fail:a"] == 1 and hour["incr"]["dead:b"] == 1
    assert len(hour["set"]["msg=builtins.ValueError:a"]) == 200  # a message is cut short
    assert sections[space.history("1m", int(t) + 60)]["incr"] == {
        "fail:a": 1,
        "retry:a": 1,
        "rt0.25:a": 1,
        "lat0.5:a": 1,
        "err=builtins.ValueError:a": 1,
        "dead:b": 1,
        "err=taskemit.errors.JobPayloadError:b": 1,
    }

    taken = tally.take()
    assert not tally and taken
    tally.add("a", ("succeeded",), t + 5)
    tally.merge(taken)  # a write that failed is added to the next
    assert {(m, n): c.get("ok", 0) for m, n, c, _ in tally.minutes()}[(int(t), "a")] == 3


def _sections(keys: list[str], args: list[Any]) -> dict[str, dict[str, Any]]:
    """history.lua's ARGV, parsed back per key."""
    found, a = {}, 0
    for key in keys:
        expire_at, increments, maximums, values = args[a : a + 4]
        a += 4
        section: dict[str, Any] = {"expire_at": expire_at}
        for kind, count in (("incr", increments), ("max", maximums), ("set", values)):
            section[kind] = dict(zip(args[a : a + 2 * count : 2], args[a + 1 : a + 2 * count : 2], strict=True))
            a += 2 * count
        found[key] = section
    assert a == len(args)
    return found


# -- written by workers, read back -------------------------------------------------------------


async def test_a_load_shows_in_the_minute_buckets_its_jobs_finished_in(
    settings: Settings, redis: aioredis.Redis
) -> None:
    async with Emitter([ok, flaky], settings) as emitter:
        receipts = [await emitter.publish("hist_event", n=n) for n in range(50)]
    async with InProcessWorker([ok, flaky], settings):
        for receipt in receipts:
            assert receipt is not None
            await receipt.wait(timeout=20)
    # when each job finished, from the event records: the minute it must be counted in
    expected: Counter[tuple[int, str, str]] = Counter()
    for receipt in receipts:
        assert receipt is not None
        record = await redis.hgetall(settings.keys.event(receipt.event_uuid))
        for field, value in record.items():
            if field.startswith(b"job:"):
                outcome = json.loads(value)
                expected[(int(outcome["finished"] // 60) * 60, outcome["listener"], outcome["status"])] += 1
    history = await read_history(redis, settings, "1h")
    found: Counter[tuple[int, str, str]] = Counter()
    for name in (ok.name, flaky.name):
        mine = await read_history(redis, settings, "1h", listener=name)
        for point in mine.points:
            found[(point.at, name, "complete")] += point.succeeded
            found[(point.at, name, "failed")] += point.dead
    assert +found == expected
    assert sum(p.succeeded for p in history.points) == 95 and sum(p.failed for p in history.points) == 5
    summaries = {s.listener: s for s in history.listeners}
    assert (summaries[ok.name].succeeded, summaries[flaky.name].dead) == (50, 5)
    assert summaries[ok.name].run_time_p95 is not None and summaries[ok.name].latency_p50 is not None
    (failure,) = history.failures
    assert (failure.listener, failure.error_type, failure.count) == (flaky.name, "builtins.ConnectionRefusedError", 5)
    assert failure.last_message.startswith("refused order ")
    # the other spans sum the same minutes
    for span in ("24h", "30d"):
        longer = await read_history(redis, settings, span)
        assert sum(p.succeeded for p in longer.points) == 95 and sum(p.dead for p in longer.points) == 5
        assert len(longer.points) == SPANS[span].points and longer.step == SPANS[span].step
    # the rates of the listener stats come from the same minute buckets
    stats = {s.listener: s for s in await read_listener_stats(redis, space=settings.keys)}
    assert stats[ok.name].succeeded_rate == pytest.approx(50 / 300)


async def test_buckets_expire_as_the_settings_say(settings: Settings, redis: aioredis.Redis) -> None:
    longer = settings.model_copy(
        update={
            "history_minute_retention": 7200,
            "history_five_minute_retention": 3 * 86400,
            "history_hour_retention": 40 * 86400,
        }
    )
    now = time.time()
    tally = HistoryTally()
    tally.add("l", ("succeeded",), now)
    await write_history(redis, longer, tally)
    space = longer.keys
    for name, step, kept in (("1m", 60, 7200), ("5m", 300, 3 * 86400), ("1h", 3600, 40 * 86400)):
        start = int(now // step) * step
        ttl = await redis.ttl(space.history(name, start))
        assert start + step + kept - now - 2 <= ttl <= start + step + kept - now + 1, name
    # a minute whose buckets are past their retention is not kept at all
    old = HistoryTally()
    old.add("l", ("succeeded",), now - 4 * 3600)
    await write_history(redis, settings, old)
    assert not await redis.exists(space.history("1m", int((now - 4 * 3600) // 60) * 60))
    assert await redis.exists(space.history("5m", int((now - 4 * 3600) // 300) * 300))


async def test_history_off_writes_nothing(settings: Settings, redis: aioredis.Redis) -> None:
    off = settings.model_copy(update={"history": False})
    async with Emitter([ok], off) as emitter:
        receipt = await emitter.publish("hist_event", n=1)
    async with InProcessWorker([ok], off):
        assert receipt is not None
        await receipt.wait(timeout=10)
    assert await redis.keys(off.keys.history("*", 0).replace(":0", "*")) == []
    assert (await read_listener_stats(redis, space=off.keys))[0].succeeded == 1


async def test_a_write_redis_does_not_take_is_kept_for_the_next(settings: Settings, redis: aioredis.Redis) -> None:
    recorder = HistoryRecorder(settings, "w1")
    recorder.tally.add("l", ("succeeded",), time.time())
    gone = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(RedisConnectionError):
        await recorder.flush(gone)
    await gone.aclose()
    recorder.tally.add("l", ("succeeded",), time.time())
    await recorder.flush(redis)
    history = await read_history(redis, settings, "1h")
    assert sum(p.succeeded for p in history.points) == 2


async def _start_of_a_minute() -> None:
    """Wait until at least 10 s of the current minute are left, so that samples a few seconds
    apart fall in one minute bucket."""
    left = 60 - time.time() % 60
    if left < 10:
        await asyncio.sleep(left + 0.05)


async def test_one_sample_per_interval_and_jobs_waiting_for_a_worker(settings: Settings, redis: aioredis.Redis) -> None:
    await _start_of_a_minute()  # both samples below are read back from one bucket
    async with Emitter([ok, parked], settings) as emitter:
        for n in range(3):
            await emitter.publish("hist_parked", n=n)
    # no worker runs: the dashboard (or `taskemit stats`) samples
    assert await sample_if_due(redis, settings, "dashboard")
    assert not await sample_if_due(redis, settings, "cli")  # one sample per interval, whoever takes it
    assert not await claim_sample(redis, settings.keys, "w1", settings.history_interval)
    history = await read_history(redis, settings, "1h")
    (point,) = [p for p in history.points if p.samples]
    assert point.samples == 1 and point.waiting == 3 and point.waiting_max == 3
    assert point.queued == {"default": 0.0, "parked": 3.0} and point.workers == 0 and point.busy == 0
    mine = await read_history(redis, settings, "1h", listener=parked.name)
    assert [p.queued for p in mine.points if p.samples] == [{parked.name: 3.0}]
    assert [p.waiting for p in mine.points if p.samples] == [3.0]
    # a worker that serves it: its samples count it, with its slots
    await asyncio.sleep(settings.history_interval)
    gauges = Gauges(queued={"parked": 1}, workers=2, busy=3, slots=8)
    await write_history(redis, settings, None, gauges, time.time())
    history = await read_history(redis, settings, "1h")
    (point,) = [p for p in history.points if p.samples]
    assert point.samples == 2 and point.workers == 1 and point.slots == 4 and point.busy_max == 3
    assert point.queued_max == {"default": 0, "parked": 3}
    with pytest.raises(InvalidArgument, match="unknown history span '7d'"):
        await read_history(redis, settings, "7d")


@needs_arq
async def test_a_stock_arq_worker_keeps_the_history(settings: Settings, redis: aioredis.Redis) -> None:
    async with Emitter([ok, flaky], settings) as emitter:
        for n in range(10):
            emitter.emit("hist_event", n=n)
    worker = create_worker(
        worker_settings([ok, flaky], settings=settings), burst=True, poll_delay=0.01, handle_signals=False
    )
    await worker.async_run()
    await worker.close()  # arq's on_shutdown writes the last tallies
    history = await read_history(redis, settings, "1h")
    assert sum(p.succeeded for p in history.points) == 19 and sum(p.dead for p in history.points) == 1
    assert [(f.listener, f.count) for f in history.failures] == [(flaky.name, 1)]


# -- separate worker processes -----------------------------------------------------------------


async def _emit(settings: Settings, count: int, start: int) -> None:
    async with Emitter(proc_listeners.WorkerSettings.taskemit_listeners, settings) as emitter:
        for n in range(start, start + count):
            emitter.emit("proc_event", n)


async def _succeeded(redis: aioredis.Redis, settings: Settings) -> int:
    history = await read_history(redis, settings, "1h")
    return sum(p.succeeded for p in history.points)


async def test_the_history_outlives_worker_restarts(settings: Settings, redis: aioredis.Redis, tmp_path: Path) -> None:
    await _emit(settings, 20, 0)
    # a worker process that is stopped with SIGTERM writes what it counted before it exits
    worker = subprocess.Popen(
        [sys.executable, "-m", "taskemit", "worker", "proc_listeners:WorkerSettings"],
        env=child_env(settings, TASKEMIT_HISTORY_INTERVAL="60"),  # no write before the stop
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while await redis.llen("proc:calls") < 20:
            assert worker.poll() is None and time.monotonic() < deadline, "the worker did not run the jobs"
            await asyncio.sleep(0.05)
        assert await _succeeded(redis, settings) == 0  # in the worker's memory so far
        worker.send_signal(signal.SIGTERM)
        out, _ = await asyncio.to_thread(worker.communicate, timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, out.decode()
    assert await _succeeded(redis, settings) == 20
    # another worker process adds to the same buckets; the first one's counts stay
    await _emit(settings, 10, 20)
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "taskemit", "worker", "proc_listeners:WorkerSettings", "--burst"],
        env=child_env(settings),
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert await _succeeded(redis, settings) == 30
