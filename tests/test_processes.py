"""Workers as separate OS processes: the stock arq CLI, and `taskemit worker` pools."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import proc_listeners
import pytest
from arq_support import needs_arq
from children import child_env
from redis import asyncio as aioredis

from taskemit import Emitter
from taskemit.monitor.deadletter import get_dead_letter
from taskemit.settings import Settings


async def emit_calls(settings: Settings, count: int) -> None:
    async with Emitter(proc_listeners.WorkerSettings.taskemit_listeners, settings) as emitter:
        for n in range(count):
            emitter.emit("proc_event", n, source="test")


async def wait_for_calls(redis: aioredis.Redis, count: int, timeout: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        calls = [c.decode() for c in await redis.lrange("proc:calls", 0, -1)]
        if len(calls) >= count:
            return calls
        await asyncio.sleep(0.05)
    raise AssertionError(f"only {await redis.llen('proc:calls')} of {count} calls arrived")


@pytest.fixture
def settings(taskemit_settings: Settings) -> Settings:
    return taskemit_settings.model_copy(update={"drain_on_exit": False})


@needs_arq
async def test_stock_arq_cli_runs_the_jobs(settings: Settings, redis: aioredis.Redis, tmp_path: Path) -> None:
    await emit_calls(settings, 5)
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "arq", "proc_listeners.WorkerSettings", "--burst"],
        env=child_env(settings),
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()
    calls = await wait_for_calls(redis, 5, timeout=1)
    assert sorted(int(c.split(":")[0]) for c in calls) == list(range(5))
    assert all(int(c.split(":")[1]) != os.getpid() for c in calls)  # ran in the arq process


async def test_pool_in_burst_mode_runs_everything_and_exits(
    settings: Settings, redis: aioredis.Redis, tmp_path: Path
) -> None:
    await emit_calls(settings, 30)
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "taskemit", "worker", "proc_listeners:WorkerSettings", "-p", "2", "--burst"],
        env=child_env(settings),
        cwd=tmp_path,
        capture_output=True,
        timeout=90,
    )
    log = result.stderr.decode() + result.stdout.decode()
    assert result.returncode == 0, log
    assert "worker 0 started" in log and "worker 1 started" in log
    calls = await wait_for_calls(redis, 30, timeout=1)
    assert sorted(int(c.split(":")[0]) for c in calls) == list(range(30))
    assert await redis.zcard(settings.queue_key) == 0


async def test_worker_from_settings_alone(settings: Settings, redis: aioredis.Redis, tmp_path: Path) -> None:
    await emit_calls(settings, 3)
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "taskemit", "worker", "--burst"],
        env=child_env(settings, TASKEMIT_LISTENERS="proc_listeners"),
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert len(await wait_for_calls(redis, 3, timeout=1)) == 3


def test_worker_without_target_or_listeners_is_a_usage_error(settings: Settings, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "taskemit", "worker"],
        env=child_env(settings),
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert b"give a TARGET" in result.stderr


def test_bad_target_is_a_clear_error(settings: Settings, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "taskemit", "worker", "no_such_module:WorkerSettings"],
        env=child_env(settings),
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert b"cannot import 'no_such_module'" in result.stderr


def test_invalid_settings_stop_the_worker_at_start(settings: Settings, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "taskemit", "worker", "proc_listeners:WorkerSettings"],
        env=child_env(settings, TASKEMIT_JOB_TIMEOUT="soon"),
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert b"job_timeout" in result.stderr


def started_pids(log_path: Path) -> list[int]:
    return [
        int(line.split(b"(pid ")[1].split(b")")[0])
        for line in log_path.read_bytes().splitlines()
        if b"started (pid" in line
    ]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_pool_restarts_a_crashed_worker_and_stops_on_sigterm(
    settings: Settings, redis: aioredis.Redis, tmp_path: Path
) -> None:
    log_path = tmp_path / "pool.log"
    child_pids: list[int] = []
    with log_path.open("wb") as log:
        pool = subprocess.Popen(
            [sys.executable, "-m", "taskemit", "worker", "proc_listeners:WorkerSettings", "-p", "2"],
            env=child_env(settings),
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        async with Emitter(proc_listeners.WorkerSettings.taskemit_listeners, settings) as emitter:
            emitter.emit("proc_crash")
        deadline = time.monotonic() + 30
        while len(child_pids := started_pids(log_path)) < 3:  # two at start, then one restart
            assert time.monotonic() < deadline, log_path.read_text()
            assert pool.poll() is None, log_path.read_text()
            await asyncio.sleep(0.1)
        assert b"exited with code 3; restarting" in log_path.read_bytes()
        # the pool still serves jobs after the crash
        await emit_calls(settings, 4)
        await wait_for_calls(redis, 4)
    finally:
        pool.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(pool.wait, 60)
    assert code == 0, log_path.read_text()
    assert b"received SIGTERM" in log_path.read_bytes()
    assert not any(_alive(pid) for pid in child_pids)


@needs_arq
async def test_the_stock_arq_worker_retries_and_dead_letters(
    settings: Settings, redis: aioredis.Redis, tmp_path: Path
) -> None:
    async with Emitter(proc_listeners.Retrying.taskemit_listeners, settings) as emitter:
        flaky = await emitter.publish("proc_flaky")
        doomed = await emitter.publish("proc_doomed")
    assert flaky is not None and doomed is not None
    # burst: arq stops once its queue is empty, retries waiting in it included
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "arq", "proc_listeners.Retrying", "--burst"],
        env=child_env(settings),
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert await redis.lrange("proc:flaky", 0, -1) == [b"1", b"2"]
    (job,) = (await flaky.wait(timeout=10)).jobs
    assert (job.status, job.result, job.attempts) == ("complete", "done on try 2", 2)
    assert await redis.lrange("proc:doomed", 0, -1) == [b"1", b"2"]  # max_tries=2, then no more
    (job,) = (await doomed.wait(timeout=10)).jobs
    assert job.status == "failed"
    dead = await get_dead_letter(redis, doomed.jobs[proc_listeners.always_fails.name], space=settings.keys)
    assert dead is not None and dead.listener == proc_listeners.always_fails.name
    assert dead.error["type"] == "builtins.LookupError" and dead.error["message"] == "no row on try 2"
    assert [attempt["attempt"] for attempt in dead.attempts] == [1, 2]


async def test_a_job_that_kills_its_worker_on_every_try_is_dead_lettered(
    settings: Settings, redis: aioredis.Redis, tmp_path: Path
) -> None:
    log_path = tmp_path / "pool.log"
    with log_path.open("wb") as log:
        # two workers, restarted by their supervisor after each crash; a killed try is back within the lease
        pool = subprocess.Popen(
            [sys.executable, "-m", "taskemit", "worker", "proc_listeners:Poison", "-p", "2"],
            env=child_env(settings, TASKEMIT_LEASE_TTL="2"),
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        async with Emitter([proc_listeners.kills_its_worker], settings) as emitter:
            receipt = await emitter.publish("proc_poison")
        assert receipt is not None
        (job,) = (await receipt.wait(timeout=90)).jobs
    except BaseException:
        print(log_path.read_text(), await redis.lrange("proc:poison", 0, -1))
        raise
    finally:
        pool.send_signal(signal.SIGTERM)
        await asyncio.to_thread(pool.wait, 60)
    tries = [int(entry.split(b":")[0]) for entry in await redis.lrange("proc:poison", 0, -1)]
    assert tries == [1, 2]  # max_tries=2: the third claim does not run it
    assert job.status == "failed"
    dead = await get_dead_letter(redis, receipt.jobs[proc_listeners.kills_its_worker.name], space=settings.keys)
    assert dead is not None and dead.reason == "attempts exhausted"
    assert "attempt 3 of 2" in dead.error["message"]
    assert log_path.read_text().count("exited with code 3; restarting") == 2
