"""The Litestar drop-in: ``event_emitter_backend=ArqEventEmitter`` with the seed docs' app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from litestar import Litestar, Request, post
from litestar.events import listener as litestar_listener
from litestar.exceptions import ImproperlyConfiguredException
from litestar.testing import AsyncTestClient
from redis import asyncio as aioredis

from taskemit import TaskEmitError, UnknownEventError, listener
from taskemit.litestar import ArqEventEmitter
from taskemit.monitor import event_status, events_between
from taskemit.settings import Settings
from taskemit.store.codec import META_KWARG, get_codec
from taskemit.testing import run_until_finished

sent: list[tuple[str, str]] = []


@listener("user_created")
async def send_welcome_email_handler(email: str) -> None:
    sent.append(("welcome", email))


@listener("user_created", "password_changed")
async def send_email_handler(email: str, message: str = "") -> None:
    sent.append(("email", f"{email}|{message}"))


@litestar_listener("user_deleted")
async def litestar_style_failing(email: str, **kwargs: Any) -> None:
    raise ConnectionError(f"support desk unreachable for {email}")


@dataclass
class CreateUserDTO:
    email: str


@post("/users")
async def create_user_handler(data: CreateUserDTO, request: Request) -> None:
    request.app.emit("user_created", email=data.email)


@post("/password", sync_to_thread=True)
def change_password_handler(data: CreateUserDTO, request: Request) -> None:
    request.app.emit("password_changed", email=data.email, message="changed")


@post("/delete")
async def delete_user_handler(data: CreateUserDTO, request: Request) -> None:
    request.app.emit("user_deleted", email=data.email, reason="deleted")


def make_app() -> Litestar:
    return Litestar(
        route_handlers=[create_user_handler, change_password_handler, delete_user_handler],
        listeners=[send_welcome_email_handler, send_email_handler, litestar_style_failing],
        event_emitter_backend=ArqEventEmitter,
    )


@pytest.fixture(autouse=True)
def _env(taskemit_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    # Litestar builds the backend with listeners= only: it must read settings from the environment
    monkeypatch.setenv("TASKEMIT_REDIS_URL", taskemit_settings.redis_url)
    monkeypatch.setenv("TASKEMIT_NAMESPACE", taskemit_settings.namespace)
    monkeypatch.setenv("TASKEMIT_DRAIN_ON_EXIT", "1")
    sent.clear()


async def test_async_and_sync_handlers_emit_through_redis(redis: aioredis.Redis, taskemit_settings: Settings) -> None:
    async with AsyncTestClient(app=make_app()) as client:
        assert (await client.post("/users", json={"email": "ada@example.com"})).status_code == 201
        assert (await client.post("/password", json={"email": "alan@example.com"})).status_code == 201
    # drain_on_exit ran a worker at the end of the lifespan
    assert sorted(sent) == [
        ("email", "ada@example.com|"),
        ("email", "alan@example.com|changed"),
        ("welcome", "ada@example.com"),
    ]
    # two events, each with one finished job per taskemit listener of it (the Litestar-style listener
    # of user_deleted got none), each run once
    uuids = await events_between(redis, 0, 2**40, space=taskemit_settings.keys)
    records = [await event_status(redis, taskemit_settings, u) for u in uuids]
    assert {r.event_id: {job.listener: job.status for job in r.jobs} for r in records if r} == {
        "user_created": {send_welcome_email_handler.name: "complete", send_email_handler.name: "complete"},
        "password_changed": {send_email_handler.name: "complete"},
    }
    assert len(records) == 2
    jobs = [job for r in records if r for job in r.jobs]
    assert [(job.attempts, job.error) for job in jobs] == [(1, None)] * 3


async def test_handler_returns_before_the_listener_runs(
    redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch, taskemit_settings: Settings
) -> None:
    monkeypatch.setenv("TASKEMIT_DRAIN_ON_EXIT", "0")
    async with AsyncTestClient(app=make_app()) as client:
        assert (await client.post("/users", json={"email": "late@example.com"})).status_code == 201
        assert sent == []  # nothing runs in the web process: jobs wait for a worker
    assert sent == []
    # the event is stored, its two jobs wait in the queue with the emitted arguments
    (uuid,) = await events_between(redis, 0, 2**40, space=taskemit_settings.keys)
    record = await event_status(redis, taskemit_settings, uuid)
    assert record is not None and record.event_id == "user_created"
    assert {job.listener: (job.status, job.attempts) for job in record.jobs} == {
        send_welcome_email_handler.name: ("queued", 0),
        send_email_handler.name: ("queued", 0),
    }
    assert await redis.zcard(taskemit_settings.queue_key) == 2
    codec = get_codec(taskemit_settings.serializer)
    for job in record.jobs:
        payload = codec.decode_job(await redis.get(taskemit_settings.keys.job(job.job_id)))
        assert (payload["f"], list(payload["a"])) == (job.listener, [])
        assert {k: v for k, v in payload["k"].items() if k != META_KWARG} == {"email": "late@example.com"}
    # a worker started later runs exactly those jobs
    job_ids = [job.job_id for job in record.jobs]
    listeners = [send_welcome_email_handler, send_email_handler]
    await run_until_finished(redis, job_ids, listeners, taskemit_settings, timeout=10)
    assert sorted(sent) == [("email", "late@example.com|"), ("welcome", "late@example.com")]
    record = await event_status(redis, taskemit_settings, uuid)
    assert record is not None and [job.status for job in record.jobs] == ["complete", "complete"]


async def test_litestar_event_listener_failure_reaches_the_job(
    redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch, taskemit_settings: Settings
) -> None:
    monkeypatch.setenv("TASKEMIT_MAX_TRIES", "1")
    async with AsyncTestClient(app=make_app()) as client:
        await client.post("/delete", json={"email": "bye@example.com"})
    (uuid,) = await events_between(redis, 0, 2**40, space=taskemit_settings.keys)
    record = await event_status(redis, taskemit_settings, uuid)
    assert record is not None
    (job,) = record.jobs
    # Litestar's own wrapper would have logged and swallowed this; here the job fails visibly
    assert job.status == "failed"
    assert job.error is not None and job.error["type"] == "builtins.ConnectionError"
    assert "bye@example.com" in job.error["message"]


async def test_unknown_event_is_litestars_exception() -> None:
    app = make_app()
    async with AsyncTestClient(app=app):
        with pytest.raises(ImproperlyConfiguredException) as info:
            app.emit("nobody_listens", 1)
    assert isinstance(info.value, UnknownEventError) and isinstance(info.value, TaskEmitError)
    assert "nobody_listens" in str(info.value)


async def test_emit_outside_lifespan_is_runtime_error() -> None:
    app = make_app()
    with pytest.raises(RuntimeError, match="Emitter not initialized"):
        app.emit("user_created", email="x@example.com")


async def test_mismatched_arguments_fail_in_the_handler() -> None:
    app = make_app()
    async with AsyncTestClient(app=app):
        with pytest.raises(TypeError, match="send_welcome_email_handler"):
            app.emit("user_created", email="a@example.com", unexpected=True)


async def test_publish_returns_receipt(redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKEMIT_DRAIN_ON_EXIT", "0")
    app = make_app()
    async with AsyncTestClient(app=app):
        backend = app.event_emitter
        assert isinstance(backend, ArqEventEmitter)
        receipt = await backend.publish("user_created", email="r@example.com")
    assert receipt is not None
    assert set(receipt.jobs) == {send_welcome_email_handler.name, send_email_handler.name}
    assert await redis.zcard(backend.emitter.settings.queue_key) == 2
