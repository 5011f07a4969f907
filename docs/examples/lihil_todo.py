"""lihil's message-system example (TodoCreated, EventBus) on taskemit.

Serve it:       uvicorn lihil_todo:app
Run a worker:   taskemit worker lihil_todo:WorkerSettings
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from litestar import Litestar, post
from litestar.di import NamedDependency

from taskemit import Attempt, Emitter, listener, worker_settings
from taskemit.litestar import TaskEmitConfig, TaskEmitPlugin


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# lihil's `Event` base class: here any dataclass, pydantic model or msgspec Struct.
@dataclass
class TodoEvent:
    name: str


@dataclass
class TodoCreated(TodoEvent):
    content: str
    created_at: dt.datetime = field(default_factory=now)


@dataclass
class TodoExpired(TodoEvent):
    expired_at: dt.datetime


def is_expired(created_at: dt.datetime) -> bool:
    return now() - created_at > dt.timedelta(days=30)


# Subscribed by the annotation; `ctx: Attempt` is lihil's MessageContext.
@listener()
async def listen_create(created: TodoCreated, ctx: Attempt) -> None:
    assert created.name
    assert created.content
    print(f"created {created.name!r} (attempt {ctx.number} of {ctx.max_tries})")


# An `Emitter` parameter is lihil's EventBus: publish follow-up events.
@listener()
async def listen_twice(created: TodoCreated, ctx: Attempt, bus: Emitter) -> None:
    if is_expired(created.created_at):
        await bus.publish(TodoExpired(name=created.name, expired_at=now()))


# A listener of the base class gets every subclass's events too.
@listener()
async def audit(event: TodoEvent) -> None:
    print(f"audit: {type(event).__name__} {event.name!r}")


LISTENERS = [listen_create, listen_twice, audit]


@dataclass
class NewTodo:
    name: str
    content: str


# lihil's `bus.publish` runs the handlers before it returns: `wait=True` does that here,
# raising the listeners' errors; without it, publish returns once the event is stored.
@post("/todos")
async def create_todo(data: NewTodo, emitter: NamedDependency[Emitter]) -> dict[str, str]:
    receipt = await emitter.publish(TodoCreated(data.name, data.content), wait=True, timeout=10)
    assert receipt is not None
    return {"event": receipt.event_uuid}


app = Litestar([create_todo], plugins=[TaskEmitPlugin(TaskEmitConfig(listeners=LISTENERS))])
WorkerSettings = worker_settings(listeners=LISTENERS)
