"""The monitoring commands, heartbeats, the health check and Prometheus metrics."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis import asyncio as aioredis

from taskemit import Backoff, Emitter, listener
from taskemit.cli import cli
from taskemit.litestar import metrics_route
from taskemit.monitor import live_workers
from taskemit.settings import Settings
from taskemit.store.redis_server import free_port
from taskemit.testing import InProcessWorker

release = asyncio.Event()


@listener("signup")
async def welcome(email: str) -> str:
    return f"welcomed {email}"


@listener("signup", max_tries=1, backoff=Backoff.fixed(0.01))
async def crm_sync(email: str) -> None:
    if email.startswith("bad"):
        raise ConnectionError(f"crm refused {email}")


@listener("hold")
async def held(n: int) -> None:
    await release.wait()


ALL = [welcome, crm_sync, held]


@pytest.fixture
def env(taskemit_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("TASKEMIT_REDIS_URL", taskemit_settings.redis_url)
    monkeypatch.setenv("TASKEMIT_NAMESPACE", taskemit_settings.namespace)
    return taskemit_settings.model_copy(update={"drain_on_exit": False})


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


async def arun(*args: str) -> Any:
    return await asyncio.to_thread(run, *args)


async def test_status_events_and_stats(env: Settings) -> None:
    async with Emitter(ALL, env) as emitter:
        good = await emitter.publish("signup", email="ada@example.com")
        bad = await emitter.publish("signup", email="bad@example.com")
    assert good and bad
    queued = await arun("status", good.event_uuid, "--json")
    assert json.loads(queued.output)["status"] == "queued"
    async with InProcessWorker(ALL, env):
        await good.wait(timeout=10)
        await bad.wait(timeout=10)

    shown = await arun("status", good.event_uuid)
    assert shown.exit_code == 0
    assert "complete" in shown.output and "welcomed ada@example.com" in shown.output
    job = await arun("status", bad.jobs[crm_sync.name], "--json")
    data = json.loads(job.output)
    assert data["status"] == "failed" and data["error"]["message"] == "crm refused bad@example.com"
    missing = await arun("status", "nothing-like-this")
    assert missing.exit_code == 4 and "no event or job with id 'nothing-like-this'" in missing.output

    listed = json.loads((await arun("events", "--json")).output)
    assert {e["event_uuid"] for e in listed["items"]} == {good.event_uuid, bad.event_uuid}
    failed = json.loads((await arun("events", "--status", "failed", "--json")).output)
    assert [e["event_uuid"] for e in failed["items"]] == [bad.event_uuid]
    table = await arun("events", "--event", "signup")
    assert bad.event_uuid in table.output and "failed" in table.output

    stats = json.loads((await arun("stats", "--json")).output)
    rows = {row["listener"]: row for row in stats["listeners"]}
    assert rows[welcome.name]["succeeded"] == 2 and rows[crm_sync.name]["dead"] == 1
    assert rows[welcome.name]["p50"] is not None
    assert stats["queue"] == {"queue": env.queue_name, "queued": 0, "deferred": 0, "in_progress": 0, "workers": 0}
    human = await arun("stats")
    assert "Listeners" in human.output and welcome.name in human.output


async def test_workers_heartbeat_and_check(env: Settings, redis: aioredis.Redis) -> None:
    release.clear()
    down = await arun("check")
    assert down.exit_code == 1 and "no worker heartbeat" in down.output
    async with Emitter(ALL, env) as emitter:
        await emitter.publish("hold", 1)
    async with InProcessWorker(ALL, env):
        for _ in range(200):
            workers = await live_workers(redis, env.queue_name, space=env.keys)
            if workers and workers[0].running.get(held.name):
                break
            await asyncio.sleep(0.05)
        assert workers and workers[0].running == {held.name: 1} and workers[0].jobs_running == 1
        up = await arun("check")
        assert up.exit_code == 0 and "1 live worker" in up.output
        listed = json.loads((await arun("workers", "--json")).output)
        assert listed[0]["pid"] > 0 and listed[0]["queue"] == env.queue_name
        stats = json.loads((await arun("stats", "--json")).output)
        assert stats["queue"]["in_progress"] == 1 and stats["queue"]["workers"] == 1
        release.set()
    # a worker that stops cleanly removes its heartbeat
    assert await live_workers(redis, env.queue_name, space=env.keys) == []


async def test_prometheus_metrics(env: Settings) -> None:
    async with Emitter(ALL, env) as emitter:
        receipts = [await emitter.publish("signup", email=e) for e in ("a@x.io", "bad@x.io", "b@x.io")]
    async with InProcessWorker(ALL, env):
        for receipt in receipts:
            assert receipt is not None
            await receipt.wait(timeout=10)
    app = Litestar(route_handlers=[metrics_route(settings=env)])
    async with AsyncTestClient(app=app) as client:
        response = await client.get("/metrics")
    text = response.text
    assert response.status_code == 200 and "text/plain" in response.headers["content-type"]
    assert 'taskemit_events_emitted_total{event="signup"} 3.0' in text
    assert f'taskemit_listener_attempts_total{{listener="{welcome.name}",outcome="succeeded"}} 3.0' in text
    assert f'taskemit_listener_attempts_total{{listener="{crm_sync.name}",outcome="dead"}} 1.0' in text
    assert f'taskemit_listener_duration_seconds_count{{listener="{welcome.name}"}} 3.0' in text
    assert f'taskemit_queue_jobs{{queue="{env.queue_name}",state="ready"}} 0.0' in text

    # the same metrics from `taskemit metrics` as a separate process
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "taskemit", "metrics", "--port", str(port), "--host", "127.0.0.1"],
        env={**__import__("os").environ, "TASKEMIT_REDIS_URL": env.redis_url, "TASKEMIT_NAMESPACE": env.namespace},
    )
    try:
        body = ""
        for _ in range(100):
            try:
                body = await asyncio.to_thread(
                    lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
                )
                break
            except OSError:
                time.sleep(0.1)
        assert 'taskemit_events_emitted_total{event="signup"} 3.0' in body
    finally:
        server.terminate()
        server.wait(10)


def test_check_without_redis_is_a_message_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKEMIT_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    result = run("check")
    assert result.exit_code == 1 and "cannot reach Redis" in result.output and "Traceback" not in result.output


class Terminal:
    """A pseudo-terminal for a child's output (so rich redraws its live table there, as on a screen),
    read by a thread as it comes."""

    def __init__(self) -> None:
        self.primary, self.secondary = pty.openpty()
        self.output = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.primary, 65536)
            except OSError:  # EIO: the child closed its end
                return
            if not chunk:
                return
            self.output += chunk

    def queued_counts(self, queue: str) -> list[int]:
        """The queued figure of each Queue table drawn so far, in order."""
        text = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", bytes(self.output)).decode(errors="replace")
        return [int(n) for n in re.findall(rf"│ {re.escape(queue)}\s*│\s*(\d+)\s*│", text)]

    async def wait_for(self, check: Callable[[], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, self.output.decode(errors="replace")[-2000:]
            await asyncio.sleep(0.05)

    def close(self) -> None:
        os.close(self.secondary)
        self._reader.join(10)
        os.close(self.primary)


async def test_watch_refreshes_until_interrupted(env: Settings) -> None:
    terminal = Terminal()
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskemit", "stats", "--watch", "--interval", "0.2"],
        env={
            **os.environ,
            "TASKEMIT_REDIS_URL": env.redis_url,
            "TASKEMIT_NAMESPACE": env.namespace,
            "TERM": "xterm",
            "PYTHONFAULTHANDLER": "1",
            "COLUMNS": "200",
            "LINES": "200",
        },
        stdin=subprocess.DEVNULL,
        stdout=terminal.secondary,
        stderr=subprocess.PIPE,
    )
    try:
        await terminal.wait_for(lambda: terminal.queued_counts(env.queue_name)[-1:] == [0])  # drawn, empty
        async with Emitter(ALL, env) as emitter:
            await emitter.publish("signup", email="watched@example.com")
        # a later refresh redraws the queue with the new event's two jobs (welcome and crm_sync)
        await terminal.wait_for(lambda: terminal.queued_counts(env.queue_name)[-1:] == [2])
        assert proc.poll() is None  # still watching
        proc.send_signal(signal.SIGINT)
        try:
            err = await asyncio.to_thread(proc.communicate, timeout=30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER: the stacks of its threads on stderr
            _, stacks = await asyncio.to_thread(proc.communicate, timeout=30)
            pytest.fail(f"stats --watch did not stop on SIGINT:\n{stacks.decode(errors='replace')}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        terminal.close()
    assert proc.returncode == 0, err  # Ctrl-C ends watching cleanly, as `watch` does
    assert b"Listeners" in terminal.output and b"Traceback" not in err[1]


async def test_check_and_status_say_when_no_live_worker_serves_a_listener(env: Settings) -> None:
    async with Emitter(ALL, env) as emitter:
        receipt = await emitter.publish("signup", email="ada@example.com")
    assert receipt is not None
    # a worker that runs welcome only: crm_sync's job waits
    async with InProcessWorker([welcome, held], env):
        await asyncio.sleep(0.3)
        result = await arun("check")
        shown = await arun("status", receipt.event_uuid, "--json")
        table = await arun("status", receipt.event_uuid)
    assert result.exit_code == 0  # a worker is alive
    assert f"waiting: no live worker serves listener {crm_sync.name} (1 jobs queued on default)" in result.output
    assert welcome.name not in result.output
    jobs = {job["listener"]: job for job in json.loads(shown.output)["jobs"]}
    assert jobs[crm_sync.name]["status"] == "queued"
    assert jobs[crm_sync.name]["note"] == f"waiting: no live worker serves listener {crm_sync.name}"
    assert jobs[welcome.name]["status"] == "complete" and jobs[welcome.name]["note"] is None
    assert "waiting: no live worker serves" in " ".join(table.output.split())
    as_json = json.loads((await arun("check", "--json")).output)
    assert as_json["ok"] is False and as_json["waiting"] == [{"listener": crm_sync.name, "queue": "default", "jobs": 1}]


def test_cli_errors_are_one_line_with_exit_codes_and_global_flags(env: Settings) -> None:
    import subprocess

    down = f"redis://127.0.0.1:{free_port()}/0"
    for command in (["status", "x"], ["events"], ["stats"], ["workers"], ["dead", "list"]):
        result = subprocess.run(
            [sys.executable, "-m", "taskemit", "--redis-url", down, *command], capture_output=True, text=True
        )
        assert result.returncode == 3, (command, result.stderr)
        assert result.stderr.startswith(f"Error: cannot reach Redis at {down}") and "Traceback" not in result.stderr
        assert result.stdout == ""
    debug = subprocess.run(
        [sys.executable, "-m", "taskemit", "--redis-url", down, "--debug", "events"], capture_output=True, text=True
    )
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    # --redis-url and --namespace reach the command's settings (here: a namespace with no workers)
    found = subprocess.run(
        [
            sys.executable,
            "-m",
            "taskemit",
            "--redis-url",
            env.redis_url,
            "--namespace",
            "elsewhere",
            "workers",
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    assert found.returncode == 0 and json.loads(found.stdout) == []
    usage = subprocess.run([sys.executable, "-m", "taskemit", "status"], capture_output=True, text=True)
    assert usage.returncode == 2


async def test_listeners_shows_queues_waiting_jobs_workers_and_dead_letters(env: Settings) -> None:
    async with Emitter(ALL, env) as emitter:
        await emitter.publish("signup", email="bad@example.com")  # crm_sync dies, welcome succeeds
        await emitter.publish("hold", n=1)
    async with InProcessWorker([welcome, crm_sync], env):  # held's job has no worker
        for _ in range(200):
            shown = json.loads((await arun("listeners", "--json")).output)
            by_name = {view["listener"]: view for view in shown}
            settled = by_name[crm_sync.name]["dead"] == 1 and by_name[welcome.name]["queued"] == 0
            if settled and by_name[welcome.name]["events"]:  # and its worker's catalog entry is written
                break
            await asyncio.sleep(0.05)
        table = await arun("listeners")
    assert by_name[held.name] == {
        "listener": held.name,
        "queue": "default",
        "queued": 1,
        "running": 0,
        "workers": 0,
        "dead": 0,
        "mode": "pool",
        "events": [],  # no live worker ever registered it in the catalog
        "flow": None,  # it declares no flow control
    }
    assert by_name[welcome.name]["events"] == sorted(welcome.event_ids)  # from its worker's catalog entry
    assert by_name[crm_sync.name]["dead"] == 1 and by_name[crm_sync.name]["workers"] == 1
    assert by_name[welcome.name]["workers"] == 1 and by_name[welcome.name]["queued"] == 0
    assert "0: waiting" in table.output and held.name in table.output


async def test_abort_command(env: Settings) -> None:
    async with Emitter(ALL, env) as emitter:
        receipt = await emitter.publish("hold", n=1)
    assert receipt is not None
    job_id = receipt.jobs[held.name]
    done = await arun("abort", job_id)
    assert done.exit_code == 0 and f"job {job_id} aborted" in done.output
    again = await arun("abort", job_id)
    assert again.exit_code == 4 and "no waiting or running job" in again.output
    shown = json.loads((await arun("status", receipt.event_uuid, "--json")).output)
    assert shown["jobs"][0]["status"] == "aborted"


async def test_ids_can_be_abbreviated_to_8_characters(env: Settings) -> None:
    async with Emitter(ALL, env) as emitter:
        receipt = await emitter.publish("signup", email="ada@example.com")
    assert receipt is not None
    short_event = receipt.event_uuid[:8]
    shown = json.loads((await arun("status", short_event, "--json")).output)
    assert shown["event_uuid"] == receipt.event_uuid
    # a job: its event's first digits and its suffix, as the dashboard shows it too
    for name, job_id in receipt.jobs.items():
        token = job_id.removeprefix(env.keys.prefix)
        for short_job in (f"{token[:8]}{token[32:]}", f"{token[:10]}…{token[32:]}"):
            job = json.loads((await arun("status", short_job, "--json")).output)
            assert (job["job_id"], job["listener"]) == (job_id, name)
    # a prefix of the event's digits alone matches the event's two jobs: a usage error
    assert (await arun("status", receipt.jobs[welcome.name].removeprefix(env.keys.prefix)[:10])).exit_code == 2
    # two jobs that share a prefix: a clear usage error, not a guess
    redis = aioredis.Redis.from_url(env.redis_url)
    try:
        for tail in ("11", "22"):
            await redis.set(env.keys.job(env.keys.job_id("abcdef00" + tail * 12)), b"{}", px=60_000)
    finally:
        await redis.aclose()
    ambiguous = await arun("status", "abcdef00")
    assert ambiguous.exit_code == 2 and "matches 2 events or jobs" in ambiguous.output
    too_short = await arun("status", "abcdef0")
    assert too_short.exit_code == 4  # shorter than 8: taken as it is, and not found
