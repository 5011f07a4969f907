"""Typed events (lihil's event bus on taskemit): event classes, hierarchy through the MRO,
validated decoding in the worker, injected Attempt and Emitter with causation, publish-and-wait.
Real Redis, real in-process workers."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from collections import defaultdict
from typing import Any

import pytest
from click.testing import CliRunner
from redis import asyncio as aioredis
from typed_events import (
    InvoicePaid,
    OrderShipped,
    Quantity,
    TodoCreated,
    TodoExpired,
    UserCreated,
    UserDeleted,
    UserEvent,
)

from taskemit import Attempt, Emitter, listener
from taskemit.cli import cli
from taskemit.emit import Registry
from taskemit.engine import InProcessWorker
from taskemit.errors import (
    InvalidArgument,
    ListenerArgumentError,
    ListenerConfigError,
    ListenerError,
    UnknownEventError,
    WaitTimeout,
)
from taskemit.monitor import event_status
from taskemit.monitor.deadletter import get_dead_letter
from taskemit.settings import Settings

runs: defaultdict[str, list[Any]] = defaultdict(list)


@pytest.fixture(autouse=True)
def _reset() -> None:
    runs.clear()


@pytest.fixture
def settings(taskemit_settings: Settings) -> Settings:
    return taskemit_settings.model_copy(update={"drain_on_exit": False})


async def until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout}s: {dict(runs)}")
        await asyncio.sleep(0.01)


# -- listeners -------------------------------------------------------------------------------------


@listener()
async def listen_create(created: TodoCreated, attempt: Attempt) -> None:
    runs["create"].append((created, attempt.number, attempt.event_id))


@listener(TodoCreated)
async def listen_twice(event: Any) -> None:  # explicit class, no annotation
    runs["twice"].append(event)


@listener("todo_created")  # a string id beside the typed event
async def legacy(name: str) -> None:
    runs["legacy"].append(name)


@listener()
def on_invoice(paid: InvoicePaid) -> None:  # msgspec Struct, sync listener
    runs["invoice"].append(paid)


@listener()
async def on_shipped(shipped: OrderShipped) -> None:  # pydantic model
    runs["shipped"].append(shipped)


@listener()
async def on_user(event: UserEvent) -> None:
    runs["user"].append(event)


@listener()
async def on_user_created(event: UserCreated) -> None:
    runs["user_created"].append(event)


@dataclasses.dataclass
class UserBanned(UserEvent):  # a subclass defined after its base's listener was registered
    until: str


@listener(max_tries=5)
async def count(quantity: Quantity) -> None:
    runs["count"].append(quantity)


@listener()
async def expire(created: TodoCreated, attempt: Attempt, bus: Emitter) -> None:
    runs["expire"].append(attempt.event_uuid)
    await bus.publish(TodoExpired(name=created.name))


@listener()
async def on_expired(expired: TodoExpired) -> None:
    runs["expired"].append(expired)


@listener("work", max_tries=1)
async def works(n: int) -> None:
    await asyncio.sleep(0.2)
    runs["works"].append(n)


@listener("work", max_tries=1)
async def breaks(n: int) -> None:
    raise LookupError(f"no row {n}")


@listener("slow")
async def slow() -> None:
    await asyncio.sleep(5)


# -- 1. event classes -------------------------------------------------------------------------------


def test_listeners_subscribe_by_annotation_or_explicitly() -> None:
    assert listen_create.event_classes == (TodoCreated,) and listen_create.event_param == "created"
    assert listen_create.event_ids == frozenset({"typed_events:TodoCreated"})
    assert listen_twice.event_classes == (TodoCreated,) and listen_twice.event_param == "event"
    assert expire.emitter_param == "bus" and expire.attempt_param == "attempt"
    assert legacy.event_classes == () and legacy.event_ids == frozenset({"todo_created"})


def test_bad_typed_listeners_fail_at_decoration() -> None:
    with pytest.raises(ListenerConfigError, match="both string event ids and event classes"):
        listener("todo_created", TodoCreated)
    with pytest.raises(ListenerConfigError, match="no positional parameter"):
        listener(TodoCreated)(lambda **kw: None)

    async def two_required(event: TodoCreated, other: int) -> None: ...

    with pytest.raises(ListenerArgumentError, match="other"):
        listener()(two_required)
    with pytest.raises(ListenerConfigError, match="mode"):
        listener("x", mode="fanout")(legacy.fn)


async def test_event_instances_and_string_ids_side_by_side(settings: Settings, redis: aioredis.Redis) -> None:
    listeners = [listen_create, listen_twice, legacy, on_invoice, on_shipped]
    async with InProcessWorker(listeners, settings), Emitter(listeners, settings) as emitter:
        receipt = await emitter.publish(TodoCreated(name="a", content="b"))
        emitter.emit("todo_created", name="plain")
        emitter.emit(InvoicePaid(invoice=7, amount=9.5))
        emitter.emit(OrderShipped(order=3, at=dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC)))
        await until(lambda: len(runs["create"]) == len(runs["twice"]) == 1 and runs["legacy"] and runs["invoice"])
        await until(lambda: bool(runs["shipped"]))
    assert receipt is not None and receipt.event_id == "typed_events:TodoCreated"
    assert set(receipt.jobs) == {listen_create.name, listen_twice.name}  # not the string-id listener
    assert runs["create"] == [(TodoCreated(name="a", content="b"), 1, "typed_events:TodoCreated")]
    assert runs["twice"] == [TodoCreated(name="a", content="b")]
    assert runs["legacy"] == ["plain"]
    (paid,) = runs["invoice"]
    assert isinstance(paid, InvoicePaid) and (paid.invoice, paid.amount) == (7, 9.5)
    (shipped,) = runs["shipped"]  # validated back into the model: the datetime is a datetime again
    assert isinstance(shipped, OrderShipped) and shipped.at == dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC)
    status = await event_status(redis, settings, receipt.event_uuid)
    assert status is not None and status.event_id == "typed_events:TodoCreated"
    assert {job.status for job in status.jobs} == {"complete"}


async def test_bad_emits_of_typed_events_fail_at_emit(settings: Settings) -> None:
    async with Emitter([listen_create], settings) as emitter:
        with pytest.raises(InvalidArgument, match="emit an instance, not the class"):
            emitter.emit(TodoCreated)
        with pytest.raises(InvalidArgument, match="takes no other arguments"):
            emitter.emit(TodoCreated(name="a", content="b"), 1)
        with pytest.raises(InvalidArgument, match="string id or an instance of an event class"):
            emitter.emit(42)  # type: ignore[arg-type]
        with pytest.raises(UnknownEventError):
            emitter.emit(InvoicePaid(invoice=1, amount=1.0))


# -- 2. hierarchy -----------------------------------------------------------------------------------


def test_the_registry_resolves_classes_through_the_mro() -> None:
    registry = Registry([on_user, on_user_created])
    assert registry.for_event(UserCreated) == (on_user_created, on_user)  # its own class first
    assert registry.for_event(UserDeleted) == (on_user,)
    assert registry.for_event(UserBanned) == (on_user,)  # defined after the listener
    assert registry.for_event(TodoCreated) == ()


async def test_a_base_class_listener_gets_every_subclass_as_its_concrete_class(settings: Settings) -> None:
    listeners = [on_user, on_user_created]
    async with InProcessWorker(listeners, settings), Emitter(listeners, settings) as emitter:
        emitter.emit(UserCreated(user=1, email="a@b"))
        emitter.emit(UserDeleted(user=2, reason="asked"))
        emitter.emit(UserBanned(user=3, until="2027"))
        emitter.emit(UserEvent(user=4))
        await until(lambda: len(runs["user"]) == 4 and len(runs["user_created"]) == 1)
    by_user = {event.user: event for event in runs["user"]}
    assert by_user[1] == UserCreated(user=1, email="a@b") and type(by_user[1]) is UserCreated
    assert type(by_user[2]) is UserDeleted and by_user[2].reason == "asked"
    assert type(by_user[3]) is UserBanned and by_user[3].until == "2027"
    assert type(by_user[4]) is UserEvent
    assert runs["user_created"] == [UserCreated(user=1, email="a@b")]


# -- 3. decoding in the worker ----------------------------------------------------------------------


@dataclasses.dataclass
class _OldQuantity:  # what an older emitter sent: the same event, count was a word then
    count: str


_OldQuantity.__module__, _OldQuantity.__qualname__ = Quantity.__module__, Quantity.__qualname__


async def test_data_that_no_longer_validates_is_a_dead_letter_not_a_crash(
    settings: Settings, redis: aioredis.Redis
) -> None:
    async with InProcessWorker([count], settings), Emitter([count], settings) as emitter:
        old = await emitter.publish(_OldQuantity(count="three"))  # type: ignore[arg-type]
        emitter.emit(Quantity(count=3))
        await until(lambda: runs["count"] == [Quantity(count=3)])  # the worker lives on
        assert old is not None
        job_id = old.jobs[count.name]
        for _ in range(200):
            letter = await get_dead_letter(redis, job_id, space=settings.keys)
            if letter is not None:
                break
            await asyncio.sleep(0.02)
    assert letter is not None
    assert letter.error is not None and letter.error["type"].endswith("EventValidationError")
    assert "count" in letter.error["message"] and "three" in letter.error["message"]
    assert letter.reason == "event does not validate"
    assert letter.attempts[-1]["attempt"] == 1  # dead at once: max_tries=5 is not spent on it


# -- 4. injection and causation ---------------------------------------------------------------------


async def test_a_listener_publishes_a_follow_up_linked_to_its_cause(
    settings: Settings, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    listeners = [expire, on_expired]
    async with InProcessWorker(listeners, settings), Emitter(listeners, settings) as emitter:
        receipt = await emitter.publish(TodoCreated(name="milk", content="buy"))
        await until(lambda: runs["expired"] == [TodoExpired(name="milk")])
    assert receipt is not None and runs["expire"] == [receipt.event_uuid]
    followed = [
        status
        for status in [
            await event_status(redis, settings, uuid.decode())
            for uuid in await redis.zrange(settings.keys.events_by_id("typed_events:TodoExpired"), 0, -1)
        ]
        if status is not None
    ]
    assert len(followed) == 1 and followed[0].cause == receipt.event_uuid
    parent = await event_status(redis, settings, receipt.event_uuid)
    assert parent is not None and parent.cause is None
    monkeypatch.setenv("TASKEMIT_REDIS_URL", settings.redis_url)
    monkeypatch.setenv("TASKEMIT_NAMESPACE", settings.namespace)
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["status", followed[0].event_uuid], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert f"caused by event {receipt.event_uuid}" in result.output


# -- 5. publish and wait ----------------------------------------------------------------------------


async def test_publish_and_wait_returns_after_the_listeners_finished(settings: Settings) -> None:
    async with InProcessWorker([works], settings), Emitter([works], settings) as emitter:
        receipt = await emitter.publish("work", 1, wait=True, timeout=10)
        assert runs["works"] == [1]  # done by the time publish returned
    assert receipt is not None and list(receipt.jobs) == [works.name]


async def test_publish_and_wait_raises_the_listeners_errors(settings: Settings) -> None:
    async with InProcessWorker([works, breaks], settings), Emitter([works, breaks], settings) as emitter:
        with pytest.raises(ExceptionGroup) as info:
            await emitter.publish("work", 5, wait=True, timeout=10)
    assert runs["works"] == [5]
    (error,) = info.value.exceptions
    assert isinstance(error, ListenerError)
    assert (error.listener, error.type_name, error.message) == (breaks.name, "builtins.LookupError", "no row 5")
    assert "builtins.LookupError: no row 5" in str(error)


async def test_publish_and_wait_times_out_as_a_whole(settings: Settings) -> None:
    async with InProcessWorker([slow], settings, grace=0), Emitter([slow], settings) as emitter:
        # the listener takes 5 s: without the bound the wait would end with it, raising nothing
        with pytest.raises(WaitTimeout, match="slow"):
            await emitter.publish("slow", wait=True, timeout=0.5)
