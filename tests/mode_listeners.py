"""Listeners of one service for tests/test_modes.py, run by child worker processes only: the
test itself is a dispatcher that does not import this module (it fans out from the catalog).

Every run is recorded in the test's Redis with what it got and the pid that ran it.
"""

from __future__ import annotations

import os

from children import push as _push
from typed_events import UserCreated

from taskemit import Attempt, listener, worker_settings


@listener("config_changed", name="cache.drop", mode="broadcast")
async def drop_cache(version: int, attempt: Attempt) -> None:
    await _push("runs:broadcast", f"{version}:{attempt.event_uuid}:{os.getpid()}")


@listener("job_ready", name="single.a", mode="singleton")
async def single_a(n: int, attempt: Attempt) -> None:
    await _push("runs:singleton", f"{n}:{attempt.event_uuid}:a:{os.getpid()}")


@listener("job_ready", name="single.b", mode="singleton")
async def single_b(n: int, attempt: Attempt) -> None:
    await _push("runs:singleton", f"{n}:{attempt.event_uuid}:b:{os.getpid()}")


@listener("ping", name="ops.ping")
async def ping(host: str, count: int = 1) -> None:
    await _push("runs:ping", f"{host}:{count}")


@listener(name="users.welcome")
async def welcome(event: UserCreated) -> None:
    await _push("runs:welcome", f"{type(event).__name__}:{event.email}")


Workers = worker_settings(listeners=[drop_cache, single_a, single_b, ping, welcome])
