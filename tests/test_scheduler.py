"""The cron scheduler against a real Redis: one emit per tick across schedulers, catch-up, pause, CLI.

In-process schedulers run on a ManualClock: each test moves the time on by hand, tick by tick,
so it waits for no tick and knows exactly which ticks are due. The processes run in real time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from arq_support import needs_arq
from children import PROTOCOL_ENV
from click.testing import CliRunner
from redis import Redis
from redis import asyncio as aioredis

from taskemit import CronConfigError, CronSchedule, cron, listener, load_settings, worker_settings
from taskemit.cli import cli
from taskemit.schedule.clock import ManualClock, SystemClock
from taskemit.schedule.scheduler import (
    CLOCK_CTX_KEY,
    Scheduler,
    pause_schedule,
    resume_schedule,
    schedule_states,
)
from taskemit.settings import Settings
from taskemit.store.codec import get_codec
from taskemit.testing import InProcessWorker

EVERY_SECOND = "* * * * * *"
#: where the manual clocks start: half a second past a tick, so each second moved on crosses one
START = dt.datetime(2030, 1, 1, 12, 0, 0, 500_000, tzinfo=dt.UTC)
runs: list[tuple[str, dt.datetime]] = []


@listener("cron_tick", name="tests.cron.on_tick")
async def on_tick(which: str, tick: dt.datetime) -> None:
    runs.append((which, tick))


@listener("cron_other", name="tests.cron.other")
async def on_other(size: int) -> None: ...


def every_second(which: str, **options: Any) -> CronSchedule:
    return cron(EVERY_SECOND, "cron_tick", which=which, tick_kwarg="tick", name=f"tests.{which}", **options)


@pytest.fixture(autouse=True)
def _clear() -> None:
    runs.clear()


@pytest.fixture
def settings(taskemit_settings: Settings) -> Settings:
    return taskemit_settings.model_copy(update={"drain_on_exit": False})


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START.timestamp())


def tick_at(second: int) -> dt.datetime:
    """The every-second tick ``second`` seconds after 12:00:00 on the day the manual clocks start."""
    return START.replace(microsecond=0) + dt.timedelta(seconds=second)


async def step(clock: ManualClock, seconds: float, schedulers: int) -> None:
    """Move the clock on by ``seconds``, then wait until the ``schedulers`` dealt with it and sleep again."""
    clock.advance(seconds)
    await clock.wait_for_sleepers(schedulers)


async def queued_ticks(redis: aioredis.Redis, settings: Settings) -> dict[str, list[dt.datetime]]:
    """The ticks of the jobs waiting in the queue, per schedule (their ``which``), oldest first."""
    codec = get_codec(settings.serializer)
    found: dict[str, list[dt.datetime]] = defaultdict(list)
    for job_id in await redis.zrange(settings.queue_key, 0, -1):
        job = codec.decode_job(await redis.get(settings.keys.job(job_id.decode())))
        found[job["k"]["which"]].append(job["k"]["tick"])
    return {which: sorted(ticks) for which, ticks in found.items()}


def assert_each_second_once(ticks: list[dt.datetime], at_least: int) -> None:
    assert len(ticks) >= at_least, ticks
    assert all(n == 1 for n in Counter(ticks).values()), f"a tick was emitted twice: {sorted(ticks)}"
    ordered = sorted(ticks)
    assert all(b - a == dt.timedelta(seconds=1) for a, b in itertools.pairwise(ordered)), ordered


async def wait_until_empty(redis: aioredis.Redis, settings: Settings, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while await redis.zcard(settings.queue_key):
        assert time.monotonic() < deadline, "the queued jobs did not run"
        await asyncio.sleep(0.05)


# -- the clock ------------------------------------------------------------------------------------


async def test_manual_clock_wakes_the_sleepers_whose_time_came(settings: Settings) -> None:
    clock = ManualClock(100.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, deadline: float) -> None:
        await clock.sleep_until(deadline)
        woke.append((name, clock.now()))

    tasks = [asyncio.create_task(sleeper(name, at)) for name, at in (("a", 101.0), ("b", 103.0), ("c", 105.0))]
    await clock.wait_for_sleepers(3)
    assert (clock.sleepers, clock.next_wake) == (3, 101.0)
    clock.advance(0.5)
    await clock.wait_for_sleepers(3)
    assert woke == []  # still 100.5: nobody's time came
    clock.advance(2.5)  # 103: a and b
    await asyncio.gather(*tasks[:2])
    assert woke == [("a", 103.0), ("b", 103.0)] and (clock.sleepers, clock.next_wake) == (1, 105.0)
    tasks[2].cancel()  # a cancelled sleeper leaves the clock
    with pytest.raises(asyncio.CancelledError):
        await tasks[2]
    assert (clock.sleepers, clock.next_wake) == (0, None)
    await clock.sleep_until(50.0)  # a time already past returns at once
    with pytest.raises(ValueError, match="does not go back"):
        clock.advance(-1)
    with pytest.raises(TimeoutError, match="0 tasks sleep on the clock"):
        await clock.wait_for_sleepers(1, timeout=0.05)
    # a plain callable still works as a scheduler's clock: its time, real sleeps
    scheduler = Scheduler([every_second("callable")], [on_tick], settings, clock=lambda: 1_000.0)
    assert scheduler.clock.now() == 1_000.0 and scheduler._now() == dt.datetime.fromtimestamp(1_000, dt.UTC)
    assert isinstance(Scheduler([every_second("default")], [on_tick], settings).clock, SystemClock)


# -- exactly once ---------------------------------------------------------------------------------


async def test_several_schedulers_emit_each_tick_once(
    settings: Settings, redis: aioredis.Redis, clock: ManualClock
) -> None:
    schedule = every_second("shared")
    async with InProcessWorker([on_tick], settings):
        schedulers = [Scheduler([schedule], [on_tick], settings, clock=clock) for _ in range(4)]
        for scheduler in schedulers:
            await scheduler.start()
        await clock.wait_for_sleepers(4)
        assert await redis.zcard(settings.keys.events) == 0  # no tick is due when they start
        for _ in range(3):  # the 4 wake together for each tick and race to publish it
            await step(clock, 1.0, schedulers=4)
        for scheduler in schedulers:
            await scheduler.stop()
        await wait_until_empty(redis, settings)
    # the listener ran once per tick, with the tick it serves
    assert sorted(runs) == [("shared", tick_at(1)), ("shared", tick_at(2)), ("shared", tick_at(3))]
    assert await redis.zcard(settings.keys.events) == 3


async def test_every_worker_runs_a_scheduler_and_each_tick_runs_once(
    settings: Settings, redis: aioredis.Redis, clock: ManualClock
) -> None:
    schedule = every_second("workers")
    # each worker's scheduler runs on the clock its arq ctx holds
    workers = [InProcessWorker([on_tick], settings, crons=[schedule], ctx={CLOCK_CTX_KEY: clock}) for _ in range(3)]
    for worker in workers:
        await worker.__aenter__()
    await clock.wait_for_sleepers(3)  # one scheduler per worker
    for _ in range(2):
        await step(clock, 1.0, schedulers=3)
    for worker in workers:
        await worker.close()
    assert clock.sleepers == 0  # the schedulers stopped with their workers
    clock.advance(1.0)
    emitted = await redis.zcard(settings.keys.events)
    async with InProcessWorker([on_tick], settings):  # runs what the closing workers left
        await wait_until_empty(redis, settings)
    assert sorted(runs) == [("workers", tick_at(1)), ("workers", tick_at(2))]
    assert emitted == 2
    assert await redis.zcard(settings.keys.events) == emitted  # no tick after the workers closed


async def test_worker_hooks_chain_the_users_own(settings: Settings) -> None:
    calls: list[str] = []

    async def startup(ctx: dict[str, Any]) -> None:
        calls.append("startup")

    async def shutdown(ctx: dict[str, Any]) -> None:
        calls.append(f"shutdown, scheduler gone: {'taskemit_scheduler' not in ctx}")

    cls = worker_settings(
        [on_tick], settings=settings, crons=[every_second("hooks")], on_startup=startup, on_shutdown=shutdown
    )
    assert [s.name for s in cls.taskemit_crons] == ["tests.hooks"]
    ctx: dict[str, Any] = {}
    await cls.on_startup(ctx)
    scheduler = ctx["taskemit_scheduler"]
    assert isinstance(scheduler, Scheduler) and scheduler._task is not None and not scheduler._task.done()
    await cls.on_shutdown(ctx)
    assert calls == ["startup", "shutdown, scheduler gone: True"]
    # without schedules (and without the history, whose hooks a stock arq worker runs), a worker's
    # hooks are the user's own, untouched
    no_history = settings.model_copy(update={"history": False})
    plain = worker_settings([on_tick], settings=no_history, on_startup=startup)
    assert plain.on_startup is startup and plain.taskemit_crons == ()


# -- missed ticks -----------------------------------------------------------------------------------


async def test_missed_ticks_follow_each_schedules_misfire_policy(
    settings: Settings, redis: aioredis.Redis, clock: ManualClock
) -> None:
    schedules = [
        every_second("skip", misfire="skip"),
        every_second("once", misfire="once"),
        every_second("all", misfire="all"),
        every_second("all_within", misfire="all", max_lateness=1.6),
    ]
    async with Scheduler(schedules, [on_tick], settings, clock=clock):
        await clock.wait_for_sleepers(1)
        await step(clock, 1.0, schedulers=1)  # 12:00:01.5: tick 1 emitted
    fired = await redis.zrange(settings.keys.cron_fired, 0, -1, withscores=True)
    last = {name.decode(): dt.datetime.fromtimestamp(score, dt.UTC) for name, score in fired}
    assert last == {s.name: tick_at(1) for s in schedules}
    clock.advance(3.7)  # no scheduler runs at ticks 2 to 5
    restarted = Scheduler(schedules, [on_tick], settings, clock=clock)
    async with restarted:
        await clock.wait_for_sleepers(1)  # it caught up at 12:00:05.2, when it started
        assert restarted.running_since == START + dt.timedelta(seconds=4.7)
        caught_up = await queued_ticks(redis, settings)
        await step(clock, 1.0, schedulers=1)  # then tick 6 is current for every policy
    missed = [tick_at(2), tick_at(3), tick_at(4), tick_at(5)]
    assert caught_up == {
        "skip": [tick_at(1)],
        "once": [tick_at(1), tick_at(5)],
        "all": [tick_at(1), *missed],
        # ticks 2 and 3 were 3.2 s and 2.2 s late at 12:00:05.2, past max_lateness: 4 and 5 were not
        "all_within": [tick_at(1), tick_at(4), tick_at(5)],
    }
    ticks = await queued_ticks(redis, settings)
    assert ticks == {which: [*caught, tick_at(6)] for which, caught in caught_up.items()}


# -- pause and resume -------------------------------------------------------------------------------


async def test_pause_and_resume_are_obeyed_by_every_scheduler(
    settings: Settings, redis: aioredis.Redis, clock: ManualClock
) -> None:
    schedule = every_second("paused", misfire="all")
    space = settings.keys
    async with (
        Scheduler([schedule], [on_tick], settings, clock=clock),
        Scheduler([schedule], [on_tick], settings, clock=clock),
    ):
        await clock.wait_for_sleepers(2)
        await step(clock, 1.0, schedulers=2)
        assert (await queued_ticks(redis, settings))["paused"] == [tick_at(1)]
        assert await pause_schedule(redis, schedule.name, now=clock.now(), space=space) is True
        assert await pause_schedule(redis, schedule.name, now=clock.now() + 0.1, space=space) is False
        paused_at = START + dt.timedelta(seconds=1)
        for _ in range(2):  # ticks 2 and 3 come while paused: both schedulers wake, neither emits
            await step(clock, 1.0, schedulers=2)
        assert (await queued_ticks(redis, settings))["paused"] == [tick_at(1)]
    state = (await schedule_states(redis, [schedule.name], space=space))[schedule.name]
    assert (state.paused, state.paused_at, state.last_fired) == (True, paused_at, tick_at(1))
    assert await resume_schedule(redis, schedule.name, now=clock.now(), space=space) is True
    assert await resume_schedule(redis, schedule.name, now=clock.now(), space=space) is False
    # a scheduler starting now (12:00:03.5) does not catch up ticks 2 and 3, though its policy is "all"
    async with Scheduler([schedule], [on_tick], settings, clock=clock):
        await clock.wait_for_sleepers(1)
        assert (await queued_ticks(redis, settings))["paused"] == [tick_at(1)]
        await step(clock, 1.0, schedulers=1)
    assert (await queued_ticks(redis, settings))["paused"] == [tick_at(1), tick_at(4)]
    state = (await schedule_states(redis, [schedule.name], space=space))[schedule.name]
    assert (state.paused, state.resumed_at, state.last_fired) == (False, START + dt.timedelta(seconds=3), tick_at(4))


# -- declaring mistakes -----------------------------------------------------------------------------


def test_a_schedule_without_listeners_or_with_wrong_arguments_is_refused(settings: Settings) -> None:
    nobody = cron("@hourly", "nobody_listens", name="orphan")
    with pytest.raises(CronConfigError, match="'orphan' emits 'nobody_listens', which none of the listeners"):
        worker_settings([on_tick], settings=settings, crons=[nobody])
    with pytest.raises(CronConfigError, match="'orphan'"):
        Scheduler([nobody], [on_tick], settings)
    wrong = cron("@hourly", "cron_other", name="wrong_args", colour="red")
    with pytest.raises(CronConfigError, match=r"'wrong_args': listener 'tests\.cron\.other' cannot accept"):
        worker_settings([on_other], settings=settings, crons=[wrong])
    twins = [cron("@hourly", "cron_other", size=1), cron("@hourly", "cron_other", size=2)]
    with pytest.raises(CronConfigError, match="two different cron schedules are named 'cron_other@@hourly'"):
        worker_settings([on_other], settings=settings, crons=twins)
    # a worker that does not run the scheduler does not need the listeners
    no_history = settings.model_copy(update={"history": False})
    quiet = worker_settings([on_tick], settings=no_history, crons=[nobody], run_scheduler=False)
    assert quiet.taskemit_crons == (nobody,) and not hasattr(quiet, "on_startup")


def test_cron_tables_in_settings_toml(tmp_path: Path, settings: Settings) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(
        textwrap.dedent(
            """\
            [[cron]]
            schedule = "30 2 * * *"
            event = "cron_other"
            tz = "Europe/Berlin"
            kwargs = { size = 3 }
            misfire = "all"
            """
        )
    )
    loaded = load_settings(path, redis_url=settings.redis_url, queue_name=settings.queue_name)
    (schedule,) = worker_settings([on_other], settings=loaded).taskemit_crons
    assert schedule.name == "cron_other@30 2 * * * Europe/Berlin"
    assert (schedule.kwargs, schedule.misfire) == ({"size": 3}, "all")
    path.write_text('[[cron]]\nschedule = "30 2 * * *"\nevent = "x"\ntz = "Europe/Berln"\n')
    with pytest.raises(ValueError, match=r"cron\n.*'x@30 2 \* \* \* Europe/Berln': unknown time zone"):
        load_settings(path)


# -- processes ---------------------------------------------------------------------------------------

APP = """\
import os

from redis import asyncio as aioredis

import taskemit
from taskemit import listener, worker_settings


@listener("app_tick", name="cron_app.on_tick")
async def on_tick(tick, **kwargs):
    async with aioredis.Redis.from_url(os.environ["TASKEMIT_REDIS_URL"]) as redis:
        await redis.rpush("cron_app:ticks", f"{tick.isoformat()} {os.getpid()}")


every_second = taskemit.cron("* * * * * *", "app_tick", name="app.every_second", tick_kwarg="tick")
nightly = taskemit.cron("30 2 * * *", "app_tick", name="app.nightly", tz="Europe/Berlin", tick_kwarg="tick")
# job_completion_wait: a SIGTERM while a job starts lets arq finish it (arq's own cancel of it can
# end its close() with a CancelledError, exit status 1); taskemit's worker ignores the option
WorkerSettings = worker_settings([on_tick], crons=[every_second, nightly], job_completion_wait=10)
"""


@pytest.fixture
def app_dir(tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory with cron_app.py; the environment points at the test's Redis and queue."""
    (tmp_path / "cron_app.py").write_text(APP)
    for name in list(os.environ):
        if name.startswith("TASKEMIT_") and name not in ("TASKEMIT_TEST_REDIS_URL", PROTOCOL_ENV):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TASKEMIT_REDIS_URL", settings.redis_url)
    monkeypatch.setenv("TASKEMIT_NAMESPACE", settings.namespace)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.modules.pop("cron_app", None)


def run_until(command: list[str], cwd: Path, done: Callable[[], bool]) -> str:
    """Start ``command``, wait until ``done()``, SIGTERM it; what it printed (it must exit 0)."""
    env = {**os.environ, "PYTHONPATH": str(cwd), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while not done() and process.poll() is None:
            assert time.monotonic() < deadline, "no ticks arrived"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
        assert process.returncode == 0, output.decode()
        return output.decode()
    finally:
        if process.poll() is None:
            process.kill()


def test_taskemit_scheduler_command_emits_from_its_own_process(app_dir: Path, settings: Settings) -> None:
    client = Redis.from_url(settings.redis_url)
    command = [sys.executable, "-m", "taskemit", "scheduler", "cron_app:WorkerSettings"]
    output = run_until(command, app_dir, lambda: client.zcard(settings.queue_key) >= 2)
    assert "cron scheduler started for 2 schedules: app.every_second, app.nightly" in output
    # it exited on SIGTERM (run_until checks the status), and stopped its scheduler without an error
    assert "Traceback" not in output, output
    codec = get_codec(settings.serializer)
    job_ids = [job_id.decode() for job_id in client.zrange(settings.queue_key, 0, -1)]
    jobs = [codec.decode_job(client.get(settings.keys.job(job_id))) for job_id in job_ids]
    client.close()
    assert {job["f"] for job in jobs} == {"cron_app.on_tick"}
    assert_each_second_once([job["k"]["tick"] for job in jobs], at_least=2)


@needs_arq
def test_the_stock_arq_command_runs_the_scheduler(app_dir: Path, settings: Settings) -> None:
    client = Redis.from_url(settings.redis_url)
    command = [sys.executable, "-m", "arq", "cron_app.WorkerSettings"]
    output = run_until(command, app_dir, lambda: client.llen("cron_app:ticks") >= 2)
    # the worker exited on SIGTERM (run_until checks the status), its shutdown hook raised nothing;
    # that the hook stops the scheduler is checked in-process (every worker runs a scheduler)
    assert "Traceback" not in output, output
    calls = [call.decode().split() for call in client.lrange("cron_app:ticks", 0, -1)]
    client.close()
    assert_each_second_once([dt.datetime.fromisoformat(tick) for tick, _ in calls], at_least=2)
    assert {pid for _, pid in calls} != {str(os.getpid())}  # the listener ran in the arq process


# -- the cron command -------------------------------------------------------------------------------


def test_cron_list_pause_resume(app_dir: Path, settings: Settings) -> None:
    client = Redis.from_url(settings.redis_url)
    client.zadd(settings.keys.cron_fired, {"app.nightly": dt.datetime(2026, 3, 29, 1, 30, tzinfo=dt.UTC).timestamp()})
    client.close()
    runner = CliRunner()
    listed = runner.invoke(cli, ["cron", "list", "cron_app:WorkerSettings", "--next", "2"])
    assert listed.exit_code == 0, listed.output
    for text in ("app.every_second", "app.nightly", "app_tick", "Europe/Berlin", "active", "2026-03-29 03:30:00+02:00"):
        assert text in listed.output
    nightly = cron("30 2 * * *", "app_tick", tz="Europe/Berlin")
    for tick in nightly.upcoming(dt.datetime.now(dt.UTC), 2):  # its next two ticks, in Berlin time
        assert tick.astimezone(nightly.zone).isoformat(sep=" ") in listed.output

    paused = runner.invoke(cli, ["cron", "pause", "app.nightly", "cron_app:WorkerSettings"])
    assert (paused.exit_code, paused.output) == (0, "paused app.nightly\n")
    again = runner.invoke(cli, ["cron", "pause", "app.nightly", "cron_app:WorkerSettings"])
    assert again.output == "app.nightly was already paused\n"
    as_json = runner.invoke(cli, ["cron", "list", "cron_app:WorkerSettings", "--json"])
    items = {item["name"]: item for item in json.loads(as_json.output)}
    assert items["app.nightly"]["paused"] is True and items["app.every_second"]["paused"] is False
    assert items["app.nightly"]["last_fired"] == "2026-03-29T01:30:00+00:00"
    assert items["app.nightly"]["tz"] == "Europe/Berlin" and len(items["app.nightly"]["next"]) == 3

    resumed = runner.invoke(cli, ["cron", "resume", "app.nightly", "cron_app:WorkerSettings"])
    assert (resumed.exit_code, resumed.output) == (0, "resumed app.nightly\n")
    unknown = runner.invoke(cli, ["cron", "pause", "app.nightly2", "cron_app:WorkerSettings"])
    assert unknown.exit_code == 4 and "no cron schedule is named 'app.nightly2'" in unknown.output


def test_cron_list_without_target_shows_what_a_scheduler_process_registered(
    app_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    daily = {"schedule": "@daily", "event": "app_tick", "name": "daily", "tick_kwarg": "tick"}
    monkeypatch.setenv("TASKEMIT_CRON", json.dumps([daily]))
    monkeypatch.setenv("TASKEMIT_LISTENERS", "cron_app")
    runner = CliRunner()

    def listed() -> dict[str, Any]:
        result = runner.invoke(cli, ["cron", "list", "--json"])
        assert result.exit_code == 0, result.output
        return {item["name"]: item for item in json.loads(result.output)}

    assert listed() == {}  # without TARGET the list is what schedulers registered, not the settings
    seen: dict[str, Any] = {}

    def registered() -> bool:
        seen.update(listed())
        return len(seen) == 3 and all(item["schedulers"] == 1 for item in seen.values())

    # `taskemit scheduler` without TARGET runs the [[cron]] tables and the schedules of the listeners modules
    run_until([sys.executable, "-m", "taskemit", "scheduler"], app_dir, registered)
    assert sorted(seen) == ["app.every_second", "app.nightly", "daily"]
    assert (seen["daily"]["expression"], seen["daily"]["tz"], seen["daily"]["event"]) == ("@daily", "UTC", "app_tick")
    assert all(tick.endswith("T00:00:00+00:00") for tick in seen["daily"]["next"])
    assert {name: item["schedulers"] for name, item in listed().items()} == dict.fromkeys(seen, 0)  # it stopped
