"""``EmitReceipt``: what ``publish`` stored, and the way to follow it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from redis import asyncio as aioredis

from ..monitor.status import EventStatus, event_status, wait_for_event
from ..settings import Settings, load_settings
from ..store.connection import redis_client

__all__ = ("EmitReceipt",)


@dataclass(frozen=True, slots=True)
class EmitReceipt:
    """What ``publish`` stored: the event's uuid and the arq job id of each listener."""

    event_uuid: str
    event_id: str
    jobs: Mapping[str, str]
    settings: Settings | None = field(default=None, repr=False, compare=False)

    async def status(self) -> EventStatus | None:
        """The event's current status and its jobs' (see ``taskemit.monitor``)."""
        async with self._client() as redis:
            return await event_status(redis, self._settings(), self.event_uuid)

    async def wait(self, timeout: float | None = None) -> EventStatus:
        """Wait until every listener job is complete, failed or aborted; return their statuses.

        Raises TimeoutError naming the jobs still unfinished when ``timeout`` seconds pass.
        """
        async with self._client() as redis:
            return await wait_for_event(redis, self._settings(), self.event_uuid, timeout)

    def _settings(self) -> Settings:
        return self.settings if self.settings is not None else load_settings()

    def _client(self) -> aioredis.Redis:
        # a client of its own: the receipt may outlive its emitter, or be awaited on another loop
        client: aioredis.Redis = redis_client(self._settings())
        return client
