"""SAQ (concurrency 100): ``saq ...settings``, one process each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar

from saq import Queue

from benchmarks.compare.apps import saq_app
from benchmarks.compare.systems.base import PYTHON, Producer, System, package_versions, spread


class SaqProducer(Producer):
    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    async def send(self, fanout: int, n: int, t: float) -> None:
        for task in spread(fanout):
            await self.queue.enqueue(task, n=n, t=t)


class Saq(System):
    name = "saq"
    settings: ClassVar[dict[str, Any]] = {"concurrency": saq_app.CONCURRENCY}

    def worker_commands(self, processes: int) -> list[list[str]]:
        return [[PYTHON, "-m", "saq", "benchmarks.compare.apps.saq_app.settings"]] * processes

    def versions(self) -> dict[str, str]:
        return package_versions("saq", "redis", "hiredis")

    @asynccontextmanager
    async def producer(self, url: str, queue: str) -> AsyncIterator[Producer]:
        saq_queue = Queue.from_url(url, name=queue)
        await saq_queue.connect()
        try:
            yield SaqProducer(saq_queue)
        finally:
            await saq_queue.disconnect()
