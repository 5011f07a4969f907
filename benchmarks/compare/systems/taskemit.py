"""Everything taskemit-specific in the comparison: listeners, worker command line, producer.

The worker process runs ``worker_commands()``: ``taskemit worker`` with the product's
defaults (no flags), which imports ``WorkerSettings`` from this module (built on access from
BENCH_REDIS_URL and BENCH_QUEUE).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from benchmarks.compare import probe
from benchmarks.compare.systems.base import PYTHON, Producer, System, package_versions
from taskemit import Emitter, listener, load_settings, worker_settings


@listener("ev3")
async def a(n: int, t: float) -> None:
    probe.hit(t)


@listener("ev3")
async def b(n: int, t: float) -> None:
    probe.hit(t)


@listener("ev3")
async def c(n: int, t: float) -> None:
    probe.hit(t)


@listener("ev1")
async def d(n: int, t: float) -> None:
    probe.hit(t)


@listener("foreign")
async def foreign(n: int) -> None:
    """Not in the worker: its jobs are left for a worker that has it (idle_cpu measures the cost)."""


LISTENERS = (a, b, c, d)
EVENTS = {3: "ev3", 1: "ev1"}  # fan-out -> event id


def _settings(url: str, queue: str) -> Any:
    # emit_buffer_size: the fill of the 1M-job scale scenario emits ahead of the flusher
    return load_settings(redis_url=url, queue_name=queue, emit_buffer_size=200_000)


def __getattr__(name: str) -> Any:
    """``WorkerSettings`` for ``taskemit worker`` in the worker process."""
    if name == "WorkerSettings":
        settings = _settings(os.environ["BENCH_REDIS_URL"], os.environ["BENCH_QUEUE"])
        return worker_settings(list(LISTENERS), settings=settings)
    raise AttributeError(name)


def taskemit_worker_command(processes: int) -> list[list[str]]:
    """The worker command line(s): the defaults, as a user starts it."""
    command = [PYTHON, "-m", "taskemit", "worker", f"{__name__}:WorkerSettings"]
    if processes > 1:
        command += ["--processes", str(processes)]
    return [command]


class TaskEmitProducer(Producer):
    def __init__(self, emitter: Emitter) -> None:
        self.emitter = emitter

    async def send(self, fanout: int, n: int, t: float) -> None:
        self.emitter.emit(EVENTS[fanout], n=n, t=t)  # buffered: stored by the emitter's flusher

    async def send_last(self, fanout: int, n: int, t: float) -> None:
        await self.emitter.publish(EVENTS[fanout], n=n, t=t)  # FIFO: everything before is stored too

    async def send_many(self, fanout: int, count: int) -> None:
        for n in range(count):
            if n % 5000 == 4999:  # keep the buffer bounded
                await self.emitter.publish(EVENTS[fanout], n=n, t=0.0)
            else:
                self.emitter.emit(EVENTS[fanout], n=n, t=0.0)


class TaskEmit(System):
    name = "taskemit"

    def __init__(self) -> None:
        self.settings = {"worker": "taskemit worker, defaults (one job per listener; concurrency 100)"}

    def worker_commands(self, processes: int) -> list[list[str]]:
        return taskemit_worker_command(processes)

    def versions(self) -> dict[str, str]:
        return package_versions("taskemit", "arq", "redis", "hiredis")

    async def queue_foreign(self, url: str, queue: str, jobs: int) -> None:
        """Queue ``jobs`` jobs of a listener the worker does not have."""
        async with Emitter([foreign], _settings(url, queue)) as emitter:
            for n in range(jobs - 1):
                emitter.emit("foreign", n)
            await emitter.publish("foreign", jobs - 1)

    @asynccontextmanager
    async def producer(self, url: str, queue: str) -> AsyncIterator[Producer]:
        async with Emitter(list(LISTENERS), _settings(url, queue)) as emitter:
            yield TaskEmitProducer(emitter)  # leaving the block stores what is still buffered


def litestar_backend() -> Any:
    """taskemit's Litestar event emitter backend (its settings from TASKEMIT_* variables)."""
    from taskemit.litestar import ArqEventEmitter

    return ArqEventEmitter
