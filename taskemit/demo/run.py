"""``taskemit demo``: the Litestar users API emitting events, a worker process running them."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack

from redis import Redis
from redis.exceptions import RedisError
from rich.console import Console
from rich.table import Table

from ..errors import redact_url
from ..monitor.listing import events_between
from ..monitor.status import EventStatus, event_status
from ..settings import load_settings
from ..state import JobState
from ..store.redis_server import RedisServer

_WORKER_TARGET = "taskemit.demo.listeners:WorkerSettings"
_STATUS_STYLE = {JobState.COMPLETE: "green", JobState.FAILED: "red", JobState.ABORTED: "red", JobState.UNKNOWN: "red"}


def _redis_answers(url: str) -> bool:
    try:
        with Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1) as client:
            return bool(client.ping())
    except (RedisError, OSError):
        return False


async def _call_the_api() -> None:
    from litestar.testing import AsyncTestClient

    from .app import create_app

    # The client runs the app's lifespan: the emitter is entered on startup and flushed on exit.
    async with AsyncTestClient(app=create_app()) as client:
        users = [("Ada", "Lovelace", "ada@example.com"), ("Alan", "Turing", "alan@example.com")]
        for first, last, email in users:
            response = await client.post("/users", json={"first_name": first, "last_name": last, "email": email})
            response.raise_for_status()
        response = await client.post("/users/password", json={"email": "ada@example.com"})
        response.raise_for_status()
        response = await client.request(
            "DELETE", "/users", json={"email": "alan@example.com", "reason": "moved to another service"}
        )
        response.raise_for_status()


async def _wait_for_outcomes(url: str, start: float, timeout: float) -> list[EventStatus]:
    from redis import asyncio as aioredis

    settings = load_settings()  # the demo's own URL and queue, from the environment
    async with aioredis.Redis.from_url(url) as redis:
        deadline = time.monotonic() + timeout
        while True:
            uuids = await events_between(redis, start, time.time(), space=settings.keys)
            records = [record for u in uuids if (record := await event_status(redis, settings, u)) is not None]
            if (records and all(record.done for record in records)) or time.monotonic() > deadline:
                return records
            await asyncio.sleep(0.1)


def _table(records: list[EventStatus]) -> Table:
    table = Table(title="Events and their listener jobs", title_justify="left")
    table.add_column("event", no_wrap=True)
    table.add_column("uuid", no_wrap=True)
    table.add_column("listener")
    table.add_column("status", no_wrap=True)
    table.add_column("took", justify="right", no_wrap=True)
    table.add_column("outcome")
    for record in records:
        for n, job in enumerate(record.jobs):
            took = f"{job.duration * 1000:.0f} ms" if job.duration is not None else ""
            outcome = job.result or ""
            if job.error:
                outcome = f"{job.error['type']}: {job.error['message']}"
            table.add_row(
                record.event_id if n == 0 else "",
                record.event_uuid[:8] if n == 0 else "",
                job.listener.rsplit(":", 1)[-1],
                f"[{_STATUS_STYLE.get(job.status, 'yellow')}]{job.status}[/]",
                took,
                outcome,
            )
    return table


def _remove_namespace(url: str, namespace: str) -> int:
    """Delete every key of ``namespace`` (they all carry its hash tag); returns how many."""
    from redis import Redis

    with Redis.from_url(url) as redis:
        keys = list(redis.scan_iter(match=f"*{{{namespace}}}*", count=1000))
        if keys:
            redis.delete(*keys)
        return len(keys)


def run_demo(console: Console | None = None, timeout: float = 60.0, keep: bool = False) -> int:
    """Run the demo; returns the process exit code (0 when every listener job completed).

    It runs in a namespace of its own, whose keys it deletes at the end unless ``keep``.
    """
    if console is None:
        console = Console()
        if not console.is_terminal:  # piped or captured: do not squeeze the table into 80 columns
            console = Console(width=120)
    settings = load_settings()
    with ExitStack() as stack:
        url = settings.redis_url
        if _redis_answers(url):
            console.print(f"Using the configured Redis at [bold]{redact_url(url)}[/]")
        else:
            server = stack.enter_context(RedisServer())
            url = server.url
            console.print(
                f"No Redis answered at {redact_url(settings.redis_url)}; started an embedded redis-server at "
                f"[bold]{url}[/]"
            )
        # a namespace of its own, so the demo never runs or steals jobs of a real deployment
        namespace = f"taskemit-demo-{uuid.uuid4().hex[:8]}"
        os.environ["TASKEMIT_REDIS_URL"] = url
        os.environ["TASKEMIT_NAMESPACE"] = namespace
        console.print(f"Namespace [bold]{namespace}[/] (its keys are deleted at the end unless --keep)")
        if not keep:
            stack.callback(_remove_namespace, url, namespace)
        log = stack.enter_context(tempfile.NamedTemporaryFile("w+b", prefix="taskemit-demo-worker-", suffix=".log"))
        worker = subprocess.Popen(
            [sys.executable, "-m", "taskemit", "worker", _WORKER_TARGET],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        console.print(f"Started a worker process (pid {worker.pid}) for [bold]{_WORKER_TARGET}[/]")
        try:
            start = time.time() - 0.001
            console.print("Calling the users API: POST /users x2, POST /users/password, DELETE /users")
            logging.getLogger("httpx").setLevel(logging.WARNING)
            asyncio.run(_call_the_api())
            records = asyncio.run(_wait_for_outcomes(url, start, timeout))
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        if keep:
            console.print(f"Kept the demo's keys: taskemit --namespace {namespace} events")
        console.print(_table(records))
        jobs = [job for record in records for job in record.jobs]
        workers = sorted({job.worker for job in jobs if job.worker})
        console.print(f"Jobs ran in worker process(es): {', '.join(workers) or 'none'}")
        completed = sum(job.status == JobState.COMPLETE for job in jobs)
        console.print(f"{len(records)} events, {len(jobs)} listener jobs, {completed} complete.")
        if not jobs or completed != len(jobs):
            log.seek(0)
            console.print("[red]Not every job completed.[/] Worker log:\n" + log.read().decode(errors="replace"))
            return 1
        console.print("Worker stopped; done.")
        return 0
