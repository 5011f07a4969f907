"""The schedule registry: schedulers register their schedules in Redis, and operators see, pause,
resume and trigger them through ``taskemit.monitor`` and ``taskemit cron`` without the app's code.

Schedulers run in-process on a ManualClock (their ticks come when a test moves the clock); their
registry refreshes and trigger requests run in real time. The commands run in a thread, through
click's runner, while the schedulers run on the test's event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from children import TESTS, child_env, stop
from click.testing import CliRunner, Result
from redis import asyncio as aioredis

from taskemit import CronSchedule, Emitter, cron, listener
from taskemit.cli import cli
from taskemit.errors import NoLiveScheduler, ScheduleNotFound
from taskemit.monitor import (
    ScheduleView,
    event_status,
    get_schedule,
    list_schedules,
    pause_schedule,
    recent_events,
    resume_schedule,
    trigger_event_uuid,
    trigger_schedule,
)
from taskemit.monitor.schedules import trigger_once_key
from taskemit.schedule import registry, scheduler
from taskemit.schedule.clock import ManualClock
from taskemit.schedule.scheduler import Scheduler
from taskemit.settings import Settings
from taskemit.store.codec import get_codec
from taskemit.store.redis_server import free_port
from taskemit.testing import InProcessWorker

#: half a second past a tick, so each second the clock moves on crosses one
START = dt.datetime(2030, 1, 1, 12, 0, 0, 500_000, tzinfo=dt.UTC)
runs: list[tuple[str, dt.datetime]] = []


@listener("registry_tick", name="tests.registry.on_tick")
async def on_tick(which: str, tick: dt.datetime) -> None:
    runs.append((which, tick))


@listener("registry_report", name="tests.registry.on_report")
async def on_report(fmt: str) -> None: ...


LISTENERS = [on_tick, on_report]


def every_second(which: str, **options: Any) -> CronSchedule:
    return cron("* * * * * *", "registry_tick", which=which, tick_kwarg="tick", name=f"reg.{which}", **options)


#: 02:30 in Berlin each day, 01:30 UTC in winter
REPORT = cron("30 2 * * *", "registry_report", fmt="pdf", name="reg.report", tz="Europe/Berlin")
REPORT_NEXT = dt.datetime(2030, 1, 2, 1, 30, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _clear() -> None:
    runs.clear()


@pytest.fixture
def settings(taskemit_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The test's settings; the commands find the same Redis and namespace in the environment."""
    monkeypatch.setenv("TASKEMIT_REDIS_URL", taskemit_settings.redis_url)
    monkeypatch.setenv("TASKEMIT_NAMESPACE", taskemit_settings.namespace)
    return taskemit_settings.model_copy(update={"drain_on_exit": False})


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START.timestamp())


def tick_at(second: int) -> dt.datetime:
    return START.replace(microsecond=0) + dt.timedelta(seconds=second)


async def step(clock: ManualClock, seconds: float, schedulers: int) -> None:
    clock.advance(seconds)
    await clock.wait_for_sleepers(schedulers)


async def command(*args: str) -> Result:
    """``taskemit ARGS`` through click's runner, in a thread (the schedulers run on this loop)."""
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args))


async def queued_ticks(redis: aioredis.Redis, settings: Settings) -> dict[str, list[dt.datetime]]:
    """The ticks of the queued jobs, per schedule (their ``which``), oldest first."""
    codec = get_codec(settings.serializer)
    found: dict[str, list[dt.datetime]] = defaultdict(list)
    for job_id in await redis.zrange(settings.queue_key, 0, -1):
        job = codec.decode_job(await redis.get(settings.keys.job(job_id.decode())))
        found[job["k"]["which"]].append(job["k"]["tick"])
    return {which: sorted(ticks) for which, ticks in found.items()}


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> None:
    """Wait until ``await check()`` is true."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


# -- what schedulers register -----------------------------------------------------------------------


async def test_two_schedulers_register_each_schedule_once_with_its_next_and_last_fire(
    settings: Settings, redis: aioredis.Redis, clock: ManualClock
) -> None:
    every = every_second("every", misfire="all", max_lateness=30)
    space = settings.keys
    before = time.time()
    async with (
        Scheduler([every, REPORT], LISTENERS, settings, clock=clock) as first,
        Scheduler([REPORT, every], LISTENERS, settings, clock=clock) as second,
    ):
        await clock.wait_for_sleepers(2)
        every_view, report_view = await list_schedules(redis, space=space)
        assert every_view.updated_at is not None and before <= every_view.updated_at.timestamp() <= time.time()
        assert every_view == ScheduleView(
            name="reg.every",
            event="registry_tick",
            expression="* * * * * *",
            tz="UTC",
            misfire="all",
            max_lateness=30.0,
            paused=False,
            paused_at=None,
            last_fired=None,
            next_fire=tick_at(1),
            schedulers=2,
            updated_at=every_view.updated_at,
        )
        assert (report_view.name, report_view.event, report_view.expression, report_view.tz) == (
            "reg.report",
            "registry_report",
            "30 2 * * *",
            "Europe/Berlin",
        )
        assert (report_view.misfire, report_view.max_lateness) == ("once", 3600.0)
        assert (report_view.next_fire, report_view.schedulers) == (REPORT_NEXT, 2)
        # which schedulers serve it: host, pid and id, in their entries
        ids = sorted(i.decode() for i in await redis.zrange(space.cron_schedulers, 0, -1))
        assert ids == sorted([first.registration.id, second.registration.id])
        entry = await redis.hgetall(space.cron_scheduler(first.registration.id))
        assert (
            json.loads(entry[b"schedules"]) == ["reg.every", "reg.report"]
            and entry[b"pid"] == str(os.getpid()).encode()
        )

        await step(clock, 1.0, schedulers=2)  # tick 1 fires: the registry says so at once
        view = await get_schedule(redis, "reg.every", space=space)
        assert view is not None and (view.last_fired, view.next_fire, view.schedulers) == (tick_at(1), tick_at(2), 2)
        data = view.to_dict()
        assert json.loads(json.dumps(data)) == data
        assert (data["last_fired"], data["next_fire"], data["paused_at"]) == (
            tick_at(1).isoformat(),
            tick_at(2).isoformat(),
            None,
        )
        assert view.updated_at is not None and data["updated_at"] == view.updated_at.isoformat()
    # stopped cleanly: the schedules stay, with no live scheduler
    views = await list_schedules(redis, space=space)
    assert [(v.name, v.schedulers, v.last_fired) for v in views] == [
        ("reg.every", 0, tick_at(1)),
        ("reg.report", 0, None),
    ]
    assert await redis.zcard(space.cron_schedulers) == 0
    assert await get_schedule(redis, "reg.nothing", space=space) is None
    # a schedule is forgotten a day after its last refresh
    assert 86_000 < await redis.ttl(space.cron_schedule("reg.every")) <= 86_400


#: a scheduler in a process of its own, refreshing its entry every second (so it expires 3 s after
#: the process is killed); its clock never moves, so it fires nothing
SCHEDULER_PROCESS = """
import asyncio, datetime as dt
from taskemit import cron, listener
from taskemit.schedule import registry
from taskemit.schedule.clock import ManualClock
from taskemit.schedule.scheduler import Scheduler
from taskemit.settings import load_settings

registry.REFRESH_INTERVAL = 1.0

@listener("registry_tick", name="tests.registry.on_tick")
async def on_tick(which: str, tick: dt.datetime) -> None: ...

async def main() -> None:
    schedule = cron("* * * * * *", "registry_tick", which="every", tick_kwarg="tick", name="reg.every")
    async with Scheduler([schedule], [on_tick], load_settings(), clock=ManualClock()):
        await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_a_scheduler_that_dies_leaves_the_registry_when_its_entry_expires(
    settings: Settings, redis: aioredis.Redis, clock: ManualClock
) -> None:
    space = settings.keys
    await redis.zadd(space.cron_schedules, {"reg.long_gone": time.time() - registry.FORGET_AFTER - 60})

    async def served(count: int) -> bool:
        view = await get_schedule(redis, "reg.every", space=space)
        return view is not None and view.schedulers == count

    # the survivor refreshes every REFRESH_INTERVAL (5 s), its entry lasting 15 s: a stalled loop
    # on a busy machine does not end it
    async with Scheduler([every_second("every")], LISTENERS, settings, clock=clock):
        dying = subprocess.Popen(
            [sys.executable, "-c", SCHEDULER_PROCESS], env=child_env(settings), cwd=TESTS, start_new_session=True
        )
        try:
            await eventually(lambda: served(2), timeout=30)
        finally:
            stop(dying)  # SIGKILL: it does not remove its entry
        (entry,) = [
            key
            for key in await redis.zrange(space.cron_schedulers, 0, -1)
            if await redis.hget(space.cron_scheduler(key.decode()), "pid") == str(dying.pid).encode()
        ]
        assert await redis.exists(space.cron_scheduler(entry.decode()))  # still there after the kill
        await eventually(lambda: served(1), timeout=30)  # until its entry expires; the survivor's stays
        assert not await redis.exists(space.cron_scheduler(entry.decode()))
    assert await served(0)  # the survivor left cleanly
    (view,) = await list_schedules(redis, space=space)  # listed, with no live scheduler
    assert (view.name, view.schedulers) == ("reg.every", 0)
    # registering dropped the index entry of a schedule nobody registered for a day
    assert await redis.zscore(space.cron_schedules, "reg.long_gone") is None


# -- pause and resume ---------------------------------------------------------------------------------


async def test_pause_and_resume_through_the_monitor_api_stop_and_restart_emission(
    settings: Settings, redis: aioredis.Redis, clock: ManualClock
) -> None:
    schedule = every_second("paused", misfire="all")
    space = settings.keys
    assert scheduler.pause_schedule is pause_schedule  # the scheduler module's names are the monitor's
    async with (
        Scheduler([schedule], LISTENERS, settings, clock=clock),
        Scheduler([schedule], LISTENERS, settings, clock=clock),
    ):
        await clock.wait_for_sleepers(2)
        await step(clock, 1.0, schedulers=2)
        assert await pause_schedule(redis, "reg.paused", now=clock.now(), space=space) is True
        view = await get_schedule(redis, "reg.paused", space=space)
        assert view is not None and (view.paused, view.paused_at) == (True, START + dt.timedelta(seconds=1))
        for _ in range(2):
            await step(clock, 1.0, schedulers=2)
        assert (await queued_ticks(redis, settings))["paused"] == [tick_at(1)]
        assert await resume_schedule(redis, "reg.paused", now=clock.now(), space=space) is True
        view = await get_schedule(redis, "reg.paused", space=space)
        assert view is not None and (view.paused, view.paused_at) == (False, None)
        await step(clock, 1.0, schedulers=2)
    # ticks 2 and 3 passed while paused and are not caught up, though the policy is "all"
    assert (await queued_ticks(redis, settings))["paused"] == [tick_at(1), tick_at(4)]


async def test_cron_pause_and_resume_commands_need_no_target(
    settings: Settings, redis: aioredis.Redis, clock: ManualClock
) -> None:
    schedule = every_second("steered")
    async with (
        Scheduler([schedule], LISTENERS, settings, clock=clock),
        Scheduler([schedule], LISTENERS, settings, clock=clock),
    ):
        await clock.wait_for_sleepers(2)
        paused = await command("cron", "pause", "reg.steered")
        assert (paused.exit_code, paused.output) == (0, "paused reg.steered\n")
        again = await command("cron", "pause", "reg.steered")
        assert (again.exit_code, again.output) == (0, "reg.steered was already paused\n")
        (item,) = json.loads((await command("cron", "list", "--json")).output)
        assert (item["name"], item["paused"], item["schedulers"]) == ("reg.steered", True, 2)
        for _ in range(2):
            await step(clock, 1.0, schedulers=2)
        assert await queued_ticks(redis, settings) == {}
        resumed = await command("cron", "resume", "reg.steered")
        assert (resumed.exit_code, resumed.output) == (0, "resumed reg.steered\n")
        await step(clock, 1.0, schedulers=2)
        assert await queued_ticks(redis, settings) == {"steered": [tick_at(3)]}
        not_paused = await command("cron", "resume", "reg.steered")
        assert not_paused.output == "reg.steered was not paused\n"
        unknown = await command("cron", "pause", "reg.nope")
    assert unknown.exit_code == 4
    assert unknown.stderr == "Error: no cron schedule is named 'reg.nope'; `taskemit cron list` shows the names\n"
    assert await redis.hget(settings.keys.cron_paused, "reg.nope") is None
    # paused, then forgotten (no scheduler registered it for a day): it can be resumed, not paused again
    assert (await command("cron", "pause", "reg.steered")).exit_code == 0
    await redis.delete(settings.keys.cron_schedule("reg.steered"))
    assert (await command("cron", "pause", "reg.steered")).exit_code == 4
    forgotten = await command("cron", "resume", "reg.steered")
    assert (forgotten.exit_code, forgotten.output) == (0, "resumed reg.steered\n")


# -- trigger ------------------------------------------------------------------------------------------


async def test_cron_trigger_with_two_schedulers_fires_one_event_and_the_listener_runs_once(
    settings: Settings, redis: aioredis.Redis, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="taskemit.scheduler")
    schedule = every_second("triggered")
    space = settings.keys
    async with (
        InProcessWorker([on_tick], settings),
        Scheduler([schedule], LISTENERS, settings, clock=clock),
        Scheduler([schedule], LISTENERS, settings, clock=clock),
    ):
        await clock.wait_for_sleepers(2)  # and no tick is due: the clock stands still
        before = time.time()
        result = await command("cron", "trigger", "reg.triggered")
        assert result.exit_code == 0, result.output
        event_uuid = result.output.removeprefix("triggered reg.triggered: event ").strip()
        await eventually(lambda: asyncio.sleep(0, result=len(runs) >= 1))
        await asyncio.sleep(0.5)  # room for a second event or run, if there were one
        page = await recent_events(redis, settings, event_id="registry_tick")
        view = await get_schedule(redis, "reg.triggered", space=space)
    assert [event.event_uuid for event in page.items] == [event_uuid]
    assert page.items[0].status == "complete"
    ((which, tick),) = runs  # the listener ran once, with the time of the request as its tick
    assert which == "triggered" and before <= tick.timestamp() <= time.time()
    # one of the two schedulers took the request
    taken = [record for record in caplog.records if "took trigger" in record.getMessage()]
    assert len(taken) == 1, [record.getMessage() for record in taken]
    assert await redis.hlen(space.cron_triggers) == 0
    assert view is not None and view.last_fired is None  # a trigger is not a tick


async def test_trigger_schedule_fires_a_paused_schedule_and_returns_the_request_id(
    settings: Settings, redis: aioredis.Redis, clock: ManualClock
) -> None:
    space = settings.keys
    async with Scheduler([every_second("held")], LISTENERS, settings, clock=clock):
        await clock.wait_for_sleepers(1)
        await pause_schedule(redis, "reg.held", space=space)
        request_id = await trigger_schedule(redis, "reg.held", space=space)
        event_uuid = trigger_event_uuid(request_id)
        await eventually(lambda: event_status(redis, settings, event_uuid))
        await step(clock, 2.0, schedulers=1)  # its ticks stay paused
    event = await event_status(redis, settings, event_uuid)
    assert event is not None and event.event_id == "registry_tick"
    assert await redis.zcard(space.events) == 1


async def test_trigger_of_an_unknown_schedule_exits_4_with_one_line(settings: Settings, redis: aioredis.Redis) -> None:
    result = await command("cron", "trigger", "reg.nope")
    assert (result.exit_code, result.stdout) == (4, "")
    assert result.stderr == "Error: no cron schedule is named 'reg.nope'; `taskemit cron list` shows the names\n"
    with pytest.raises(ScheduleNotFound, match=r"no cron schedule named 'reg\.nope'") as raised:
        await trigger_schedule(redis, "reg.nope", space=settings.keys)
    assert isinstance(raised.value, LookupError)
    assert await redis.hlen(settings.keys.cron_triggers) == 0


async def test_trigger_without_a_live_scheduler_is_refused(
    settings: Settings, redis: aioredis.Redis, clock: ManualClock
) -> None:
    async with Scheduler([every_second("orphan")], LISTENERS, settings, clock=clock):
        await clock.wait_for_sleepers(1)
    with pytest.raises(NoLiveScheduler, match=r"no live scheduler runs cron schedule 'reg\.orphan'"):
        await trigger_schedule(redis, "reg.orphan", space=settings.keys)
    result = await command("cron", "trigger", "reg.orphan")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: no live scheduler runs cron schedule 'reg.orphan'; start a worker")
    assert result.stderr.count("\n") == 1
    assert await redis.hlen(settings.keys.cron_triggers) == 0


async def test_a_request_left_by_stopped_schedulers_is_taken_by_the_next_and_a_stale_one_dropped(
    settings: Settings,
    redis: aioredis.Redis,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Requests stored while a scheduler was live, which stopped before taking them."""
    monkeypatch.setattr(registry, "REFRESH_INTERVAL", 0.2)
    caplog.set_level(logging.INFO, logger="taskemit.scheduler")
    space = settings.keys
    now = time.time()
    requests = {
        "fresh": {"name": "reg.late", "requested_at": now},
        "leased": {"name": "reg.late", "requested_at": now},  # taken by a scheduler that died
        "stale": {"name": "reg.late", "requested_at": now - 120},  # older than max_lateness
    }
    await redis.hset(space.cron_triggers, mapping={rid: json.dumps(body) for rid, body in requests.items()})
    # a lease far longer than the scheduler takes to start; the test runs it out below
    await redis.set(space.cron_trigger_lease("leased"), "a-dead-scheduler", px=120_000)
    # taken by a scheduler that published its event and died before removing the request
    requests["published"] = {"name": "reg.late", "requested_at": now}
    await redis.hset(space.cron_triggers, "published", json.dumps(requests["published"]))
    async with Emitter(LISTENERS, settings) as emitter:
        tick = dt.datetime.fromtimestamp(now, dt.UTC)
        await emitter.publish_once(trigger_once_key("published"), "registry_tick", which="late", tick=tick)
    async with Scheduler([every_second("late", max_lateness=60)], LISTENERS, settings, clock=clock):
        await eventually(lambda: event_status(redis, settings, trigger_event_uuid("fresh")))
        await eventually(lambda: _empty_except(redis, space.cron_triggers, "leased"))  # the rest taken
        assert await event_status(redis, settings, trigger_event_uuid("leased")) is None  # its lease holds
        assert await redis.pttl(space.cron_trigger_lease("leased")) > 0
        await redis.pexpire(space.cron_trigger_lease("leased"), 1)  # the dead taker's lease runs out
        await eventually(lambda: event_status(redis, settings, trigger_event_uuid("leased")))
        await eventually(lambda: _empty(redis, space.cron_triggers))
    assert await event_status(redis, settings, trigger_event_uuid("stale")) is None
    assert await redis.zcard(space.events) == 3  # fresh, leased and published: each once
    assert any("dropping trigger stale" in record.getMessage() for record in caplog.records)


async def _empty_except(redis: aioredis.Redis, key: str, field: str) -> bool:
    return {name.decode() for name in await redis.hkeys(key)} == {field}


async def _empty(redis: aioredis.Redis, key: str) -> bool:
    return await redis.hlen(key) == 0


# -- listing ------------------------------------------------------------------------------------------


async def test_cron_list_without_target_shows_the_registered_schedules(
    settings: Settings, redis: aioredis.Redis, clock: ManualClock
) -> None:
    empty = await command("cron", "list")
    assert empty.exit_code == 0 and f"No cron schedules registered in namespace '{settings.namespace}'" in empty.output
    async with (
        Scheduler([every_second("listed"), REPORT], LISTENERS, settings, clock=clock),
        Scheduler([REPORT], LISTENERS, settings, clock=clock),
    ):
        await clock.wait_for_sleepers(2)
        await step(clock, 1.0, schedulers=2)
        listed = await command("cron", "list", "--json", "--next", "2")
        table = await command("cron", "list")
    assert listed.exit_code == 0, listed.output
    items = {item["name"]: item for item in json.loads(listed.output)}
    assert list(items) == ["reg.listed", "reg.report"]
    every, report = items["reg.listed"], items["reg.report"]
    assert (every["schedulers"], every["last_fired"]) == (1, tick_at(1).isoformat())
    assert every["next"] == [tick_at(2).isoformat(), tick_at(3).isoformat()]  # from the tick its scheduler waits for
    assert (report["schedulers"], report["tz"], report["expression"], report["misfire"]) == (
        2,
        "Europe/Berlin",
        "30 2 * * *",
        "once",
    )
    assert report["next"] == [REPORT_NEXT.isoformat(), (REPORT_NEXT + dt.timedelta(days=1)).isoformat()]
    text = " ".join(table.output.replace("│", " ").split())  # the rows without the borders
    assert "reg.report registry_report 30 2 * * * Europe/Berlin once active 2" in text
    assert "2030-01-02 02:30:00+01:00" in text  # shown in the schedule's time zone
    stopped = await command("cron", "list", "--json")
    assert [item["schedulers"] for item in json.loads(stopped.output)] == [0, 0]
    assert "no live scheduler" in (await command("cron", "list")).output


def test_cron_commands_without_redis_exit_3(settings: Settings) -> None:
    down = f"redis://127.0.0.1:{free_port()}/0"
    for args in (["cron", "list"], ["cron", "pause", "x"], ["cron", "trigger", "x"]):
        result = subprocess.run(
            [sys.executable, "-m", "taskemit", "--redis-url", down, *args], capture_output=True, text=True
        )
        assert result.returncode == 3, (args, result.stderr)
        assert result.stderr.startswith(f"Error: cannot reach Redis at {down}") and "Traceback" not in result.stderr
