"""The seed pages (docs/from-lihil.md, docs/from-nameko.md): their examples run as shown.

Real Redis, real in-process workers, Litestar's test client; see tests/test_docs.py for how
examples are imported (the ``examples`` fixture) and pointed at the test's Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
from children import served_by
from redis import asyncio as aioredis

from taskemit import Emitter
from taskemit.engine import InProcessWorker
from taskemit.monitor import event_status, recent_events
from taskemit.settings import Settings


async def _until(check: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not seen after {timeout}s: {what}"
        await asyncio.sleep(0.02)


@contextlib.contextmanager
def worker_thread(listeners: list[Any], settings: Settings) -> Iterator[None]:
    """A taskemit worker on an event loop of its own, in a thread: Litestar's test client blocks
    the test's loop while the app handles a request, and this handler waits for the listeners."""
    stop = threading.Event()

    async def serve() -> None:
        async with InProcessWorker(listeners, settings):
            while not stop.is_set():
                await asyncio.sleep(0.02)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), name="worker", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)


@pytest.fixture
def settings(taskemit_settings: Settings) -> Settings:
    return taskemit_settings.model_copy(update={"drain_on_exit": False, "catalog_refresh": 0.1})


async def test_lihil_todo_publish_waits_for_the_listeners_and_follow_ups_link_to_their_cause(
    settings: Settings,
    redis: aioredis.Redis,
    examples: Callable[[str], ModuleType],
    point_env_at: Callable[..., None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from litestar.testing import AsyncTestClient

    point_env_at(settings)
    todo = examples("lihil_todo")
    with worker_thread(todo.LISTENERS, settings):
        await served_by(redis, settings, "lihil_todo:audit", 1)
        async with AsyncTestClient(app=todo.app) as client:
            response = await client.post("/todos", json={"name": "milk", "content": "buy"})
        assert response.status_code == 201, response.text
        printed = capsys.readouterr().out  # the listeners ran before the response
        assert "created 'milk' (attempt 1 of 5)" in printed
        assert "audit: TodoCreated 'milk'" in printed
        async with Emitter(todo.LISTENERS, settings) as emitter:
            old = todo.TodoCreated("bread", "buy", created_at=todo.now() - dt.timedelta(days=40))
            receipt = await emitter.publish(old, wait=True, timeout=10)
        seen: list[str] = []
        await _until(lambda: "audit: TodoExpired 'bread'" in "".join([*seen, capsys.readouterr().out]), "expired")
    assert receipt is not None
    page = await recent_events(redis, settings, event_id="lihil_todo:TodoExpired")
    (expired,) = page.items
    assert expired.cause == receipt.event_uuid and expired.status == "complete"
    created = await event_status(redis, settings, response.json()["event"])
    assert created is not None and {job.status for job in created.jobs} == {"complete"}


async def test_nameko_services_each_handler_type(
    settings: Settings,
    redis: aioredis.Redis,
    examples: Callable[[str], ModuleType],
    point_env_at: Callable[..., None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    point_env_at(settings, catalog_refresh="0.1")
    services = examples("nameko_services")
    b_listeners = list(services.ServiceB.taskemit_listeners)
    c_listeners = list(services.ServiceC.taskemit_listeners)
    out: list[str] = []

    def printed(line: str, times: int = 1) -> Callable[[], bool]:
        def check() -> bool:
            out.append(capsys.readouterr().out)
            return "".join(out).count(line) >= times

        return check

    async with InProcessWorker(b_listeners, settings), InProcessWorker(b_listeners, settings):
        service_c = InProcessWorker(c_listeners, settings)
        await service_c.__aenter__()
        try:
            await served_by(redis, settings, "service_b.drop_cache", 2)
            await served_by(redis, settings, "service_c.live_view", 1)
            await services.edit_foo(42)  # service A: a dispatcher without the handlers' code
            await _until(printed("service B handled foo 42"), "pool handler")
            await _until(printed("service C refreshed the live view of foo 42"), "unreliable handler, served")
            async with Emitter(settings=settings) as dispatch:
                dispatch.emit("service_a.config_changed", version=2)
                for day in ("mon", "tue", "wed", "thu"):
                    dispatch.emit("service_a.report_due", day=day)
                await _until(printed("service B dropped its cache", times=2), "broadcast to both B workers")
                await _until(lambda: "".join(out).count("report for") >= 4, "singleton reports")
        finally:
            await service_c.__aexit__(None, None, None)
        await services.edit_foo(43)  # service C is down: its unreliable handler misses this one
        await _until(printed("service B handled foo 43"), "pool handler again")
        await asyncio.sleep(0.5)
        out.append(capsys.readouterr().out)
    text = "".join(out)
    assert text.count("service B dropped its cache") == 2
    assert sum(text.count(f"report for {day} by service") for day in ("mon", "tue", "wed", "thu")) == 4
    assert "live view of foo 43" not in text
    assert text.count("service B handled foo 42") == 1
