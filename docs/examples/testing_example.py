"""Tests for the quickstart listeners and the Litestar app, using taskemit's pytest fixtures."""

from __future__ import annotations

import asyncio

import litestar_app
import pytest
import quickstart
from litestar.testing import AsyncTestClient

from taskemit import Emitter, Settings


@pytest.fixture
def outbox(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Replace the mail client with a list of the mails the listeners send."""
    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(quickstart, "send_mail", lambda to, text: sent.append((to, text)))
    monkeypatch.setattr(litestar_app, "send_mail", lambda to, text: sent.append((to, text)))
    return sent


async def test_drain_on_exit(taskemit_settings: Settings, outbox: list[tuple[str, str]]) -> None:
    # taskemit_settings has drain_on_exit on: leaving the emitter runs the jobs it stored.
    async with Emitter(quickstart.LISTENERS, taskemit_settings) as emitter:
        emitter.emit("user_created", email="ada@example.com")
    assert sorted(outbox) == [
        ("ada@example.com", "Welcome!"),
        ("ada@example.com", "Your account was created."),
    ]


async def test_with_a_running_worker(
    taskemit_settings: Settings, taskemit_worker, outbox: list[tuple[str, str]]
) -> None:
    settings = taskemit_settings.model_copy(update={"drain_on_exit": False})
    async with taskemit_worker(quickstart.LISTENERS):
        async with Emitter(quickstart.LISTENERS, settings) as emitter:
            emitter.emit("password_changed", email="ada@example.com", message="Changed.")
        for _ in range(100):  # the worker runs concurrently: wait up to 5 s
            if outbox:
                break
            await asyncio.sleep(0.05)
    assert outbox == [("ada@example.com", "Changed.")]


async def test_litestar_app(
    taskemit_settings: Settings, monkeypatch: pytest.MonkeyPatch, outbox: list[tuple[str, str]]
) -> None:
    # Litestar builds the emitter from settings, so point the environment at the test Redis.
    monkeypatch.setenv("TASKEMIT_REDIS_URL", taskemit_settings.redis_url)
    monkeypatch.setenv("TASKEMIT_QUEUE_NAME", taskemit_settings.queue_name)
    monkeypatch.setenv("TASKEMIT_DRAIN_ON_EXIT", "1")
    async with AsyncTestClient(app=litestar_app.create_app()) as client:
        response = await client.post(
            "/users", json={"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"}
        )
        assert response.status_code == 201
    # the app's shutdown drained the emitter: the listeners have run
    assert ("ada@example.com", "Welcome!") in outbox
