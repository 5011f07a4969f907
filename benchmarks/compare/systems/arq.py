"""arq, tuned as its docs allow (see apps/arq_app.py): ``arq ...WorkerSettings``, one process each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings

from benchmarks.compare.apps import arq_app
from benchmarks.compare.systems.base import PYTHON, Producer, System, package_versions, spread


class ArqProducer(Producer):
    def __init__(self, pool: ArqRedis) -> None:
        self.pool = pool

    async def send(self, fanout: int, n: int, t: float) -> None:
        for task in spread(fanout):
            await self.pool.enqueue_job(task, n=n, t=t)


class Arq(System):
    name = "arq"
    settings: ClassVar[dict[str, Any]] = dict(arq_app.SETTINGS)

    def worker_commands(self, processes: int) -> list[list[str]]:
        return [[PYTHON, "-m", "arq", "benchmarks.compare.apps.arq_app.WorkerSettings"]] * processes

    def versions(self) -> dict[str, str]:
        return package_versions("arq", "redis", "hiredis")

    @asynccontextmanager
    async def producer(self, url: str, queue: str) -> AsyncIterator[Producer]:
        pool = await create_pool(RedisSettings.from_dsn(url), default_queue_name=queue)
        try:
            yield ArqProducer(pool)
        finally:
            await pool.aclose()
