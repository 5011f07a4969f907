"""Storing what an emitter accepted: batch after batch from its backlog, until none is left.

The emitter's single flusher task calls :meth:`BacklogFlusher.flush` whenever emits wake it.
A batch that Redis does not take (an outage) goes back to the backlog and is tried again with
backoff; a reply resolves what ``publish`` waits for; events whose script Redis lost (a
restart) are stored again once the script is loaded.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis import asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from ..settings import Settings
from .backlog import Backlog
from .writer import EMIT, EventWriter, PendingEvent

__all__ = ("BacklogFlusher",)

logger = logging.getLogger("taskemit.emitter")

_BATCH_SIZE = 500
_RETRY_FIRST_DELAY = 0.05
_RETRY_MAX_DELAY = 2.0


class BacklogFlusher:
    """Stores an emitter's backlog through its writer (used by the emitter's flusher task only)."""

    __slots__ = ("_backlog", "_redis", "_stored_jobs", "_writer", "settings")

    def __init__(
        self, backlog: Backlog, writer: EventWriter, redis: aioredis.Redis, settings: Settings, stored_jobs: list[str]
    ) -> None:
        self._backlog = backlog
        self._writer = writer
        self._redis = redis
        self.settings = settings
        #: with drain_on_exit, the job ids stored so far (the emitter's list, appended to)
        self._stored_jobs = stored_jobs

    async def flush(self) -> None:
        """Store the buffer, then whatever waits in the spool, until both are empty."""
        delay = _RETRY_FIRST_DELAY
        while (taken := self._backlog.next_batch(_BATCH_SIZE)) is not None:
            batch, from_spool = taken
            try:
                async with asyncio.timeout(self.settings.publish_timeout):  # a frozen Redis fails, never hangs
                    stored = await self._writer.store(batch)
            except asyncio.CancelledError:
                self._backlog.give_back(batch, from_spool)
                raise
            except (RedisError, OSError) as exc:
                self._backlog.give_back(batch, from_spool)
                logger.warning("storing %d events failed (%s); retrying in %.2fs", len(batch), exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_DELAY)
                continue
            except Exception as exc:  # a bug, not an outage: report it to whoever waits
                logger.exception("storing %d events failed", len(batch))
                if from_spool:
                    self._backlog.stop_spool()  # they stay in the spool
                for pending in batch:
                    if pending.future is not None and not pending.future.done():
                        pending.future.set_exception(exc)
                continue
            delay = _RETRY_FIRST_DELAY
            missing_script = self._settle(batch, stored)
            self._backlog.stored(batch, from_spool, stored, missing_script)
            if missing_script:  # Redis restarted or its script cache was flushed: load it, store them again
                await self.load_script()

    def _settle(self, batch: list[PendingEvent], replies: list[Any]) -> list[PendingEvent]:
        """Resolve what ``publish`` waits for; returns the events to store again (script not loaded)."""
        missing_script = []
        for pending, reply in zip(batch, replies, strict=True):
            future = self._backlog.future_of(pending)
            if isinstance(reply, NoScriptError):
                missing_script.append(pending)
                continue
            if isinstance(reply, Exception):  # an error in the script: a bug, not an outage
                logger.error("storing event %s failed in Redis: %s", pending.event_uuid, reply)
                if future is not None and not future.done():
                    future.set_exception(reply)
                continue
            spooled = pending.future is None and future is not None  # spooled by this emitter: it was stored
            stored = bool(reply) or not pending.once or spooled
            if stored and self.settings.drain_on_exit:
                self._stored_jobs.extend(pending.jobs.values())
            if future is not None and not future.done():
                future.set_result(pending.receipt() if stored else None)
        return missing_script

    async def load_script(self) -> None:
        try:
            async with asyncio.timeout(self.settings.publish_timeout):
                await EMIT.load(self._redis)
        except (RedisError, OSError) as exc:
            logger.warning("loading the emit script failed (%s); retrying", exc)
            await asyncio.sleep(_RETRY_FIRST_DELAY)
