"""streaq (concurrency 100): ``streaq run ...:worker``, one process each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar

from streaq import Worker

from benchmarks.compare.apps import streaq_app
from benchmarks.compare.systems.base import PYTHON, Producer, System, package_versions, spread


class StreaqProducer(Producer):
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def send(self, fanout: int, n: int, t: float) -> None:
        for task in spread(fanout):
            # enqueue by name: streaq's documented way when the producer does not import the tasks
            await self.worker.enqueue_unsafe(task, n=n, t=t)


class Streaq(System):
    name = "streaq"
    settings: ClassVar[dict[str, Any]] = {"concurrency": streaq_app.CONCURRENCY}

    def worker_commands(self, processes: int) -> list[list[str]]:
        return [[PYTHON, "-m", "streaq", "run", "benchmarks.compare.apps.streaq_app:worker"]] * processes

    def versions(self) -> dict[str, str]:
        return package_versions("streaq", "coredis")

    @asynccontextmanager
    async def producer(self, url: str, queue: str) -> AsyncIterator[Producer]:
        worker: Worker = Worker(redis_url=url, queue_name=queue, handle_signals=False)
        async with worker:
            yield StreaqProducer(worker)
