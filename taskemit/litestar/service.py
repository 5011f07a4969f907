"""``DashboardData``: what the dashboard's pages and JSON API show and do, over ``taskemit.monitor``.

Both faces call the same methods, so a page shows what its JSON says. Lookups that find
nothing raise Litestar's ``NotFoundException``; a dead letter that cannot be replayed raises
a 409.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from redis import asyncio as aioredis

from ..errors import InvalidArgument, NotReplayable
from ..monitor import (
    SPANS,
    abort_job,
    event_status,
    get_dead_letter,
    iter_dead_letters,
    job_attempts,
    job_status,
    list_dead_letters,
    listener_views,
    live_workers,
    purge_dead_letters,
    queue_depths,
    read_catalog,
    read_history,
    read_listener_stats,
    recent_events,
    replay_dead_letter,
    sample_if_due,
)
from ..monitor.outbox import relay_reports
from ..settings import Settings
from ..state import JobState
from ..store.connection import redis_client
from .overview_schemas import HistoryOut, ListenerDetailOut, history_out, policy_out
from .schemas import (
    AbortOut,
    DeadLetterOut,
    DeadLetterPageOut,
    EventOut,
    EventPageOut,
    JobOut,
    ListenerOut,
    OutboxRelayOut,
    PurgeOut,
    QueueOut,
    ReplayAllOut,
    ReplayOut,
    SkippedOut,
    WorkerOut,
    dead_letter_out,
    event_out,
    job_out,
    listener_out,
    outbox_relay_out,
    queue_out,
    worker_out,
)

__all__ = ("DashboardData",)


class Conflict(HTTPException):
    status_code = 409


class DashboardData:
    """Reads and actions of the dashboard, on a Redis client of its own (opened by ``connected``)."""

    __slots__ = ("_redis", "settings")

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._redis: aioredis.Redis | None = None

    @asynccontextmanager
    async def connected(self) -> AsyncIterator[DashboardData]:
        """Open the Redis client for the app's lifespan (a Litestar ``lifespan`` manager)."""
        self._redis = redis_client(self.settings)
        try:
            yield self
        finally:
            redis, self._redis = self._redis, None  # type: ignore[var-annotated]
            await redis.aclose()

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise RuntimeError("the taskemit dashboard is used outside the app's lifespan")
        return self._redis

    # -- events ----------------------------------------------------------------------------------

    async def events(
        self,
        *,
        event_id: str | None = None,
        status: JobState | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> EventPageOut:
        try:
            page = await recent_events(
                self.redis,
                self.settings,
                event_id=event_id or None,
                status=status,
                since=since,
                until=until,
                limit=limit,
                cursor=cursor or None,
            )
        except (InvalidArgument, ValueError) as exc:  # a malformed cursor
            raise ValidationException(str(exc)) from None
        return EventPageOut(items=[event_out(event) for event in page.items], next_cursor=page.next_cursor)

    async def event(self, event_uuid: str) -> EventOut:
        event = await event_status(self.redis, self.settings, event_uuid)
        if event is None:
            raise NotFoundException(f"no event {event_uuid!r} (or its record has expired)")
        histories = await job_attempts(self.redis, [job.job_id for job in event.jobs], space=self.settings.keys)
        return event_out(event, histories)

    async def job(self, job_id: str) -> JobOut:
        job = await job_status(self.redis, self.settings, job_id)
        if job.status == JobState.UNKNOWN and not job.listener:
            raise NotFoundException(f"no job {job_id!r} (or its records have expired)")
        histories = await job_attempts(self.redis, [job.job_id], space=self.settings.keys)
        return job_out(job, histories[job.job_id])

    async def abort(self, job_id: str) -> AbortOut:
        return AbortOut(job_id=job_id, outcome=await abort_job(self.redis, self.settings, job_id))

    # -- dead letters ----------------------------------------------------------------------------

    def _dead_out(self, letter: Any) -> DeadLetterOut:
        return dead_letter_out(letter, self.settings.serializer, self.settings.redact_keys)

    async def dead_letters(
        self, *, listener: str | None = None, event: str | None = None, limit: int = 50, cursor: int = 0
    ) -> DeadLetterPageOut:
        page = await list_dead_letters(
            self.redis,
            listener=listener or None,
            event=event or None,
            limit=limit,
            cursor=cursor,
            space=self.settings.keys,
        )
        return DeadLetterPageOut(items=[self._dead_out(letter) for letter in page.items], next_cursor=page.next_cursor)

    async def dead_letter(self, job_id: str) -> DeadLetterOut:
        letter = await get_dead_letter(self.redis, job_id, space=self.settings.keys)
        if letter is None:
            raise NotFoundException(f"no dead letter {job_id!r} (replayed, purged or expired)")
        return self._dead_out(letter)

    async def replay(self, job_id: str) -> ReplayOut:
        letter = await get_dead_letter(self.redis, job_id, space=self.settings.keys)
        try:
            new_job_id = await replay_dead_letter(self.redis, self.settings, job_id)
        except NotReplayable as exc:
            raise Conflict(str(exc)) from None
        if letter is None or new_job_id is None:
            raise NotFoundException(f"no dead letter {job_id!r} (replayed, purged or expired)")
        return ReplayOut(job_id=job_id, new_job_id=new_job_id, event_uuid=letter.event_uuid)

    async def replay_all(self, *, listener: str | None = None, event: str | None = None) -> ReplayAllOut:
        # read every page first: replaying removes letters, which would shift later pages
        letters = [
            letter
            async for letter in iter_dead_letters(
                self.redis, listener=listener or None, event=event or None, space=self.settings.keys
            )
        ]
        replayed, skipped = [], []
        for letter in letters:
            try:
                new_job_id = await replay_dead_letter(self.redis, self.settings, letter.job_id)
            except NotReplayable as exc:
                skipped.append(SkippedOut(job_id=letter.job_id, reason=str(exc)))
                continue
            if new_job_id is not None:
                replayed.append(ReplayOut(job_id=letter.job_id, new_job_id=new_job_id, event_uuid=letter.event_uuid))
        return ReplayAllOut(replayed=replayed, skipped=skipped)

    async def purge(self, *, listener: str | None = None, event: str | None = None) -> PurgeOut:
        purged = await purge_dead_letters(
            self.redis,
            listener=listener or None,
            event=event or None,
            space=self.settings.keys,
            queue=self.settings.queue_key,
        )
        return PurgeOut(purged=purged)

    # -- listeners, workers, queues --------------------------------------------------------------

    async def listeners(self) -> list[ListenerOut]:
        views = {view.listener: view for view in await listener_views(self.redis, space=self.settings.keys)}
        stats = {s.listener: s for s in await read_listener_stats(self.redis, space=self.settings.keys)}
        return [listener_out(views.get(name), stats.get(name), name) for name in sorted({*views, *stats})]

    async def workers(self) -> list[WorkerOut]:
        return [worker_out(worker) for worker in await live_workers(self.redis, space=self.settings.keys)]

    async def queues(self) -> list[QueueOut]:
        return [queue_out(view) for view in await queue_depths(self.redis, self.settings)]

    async def outbox_relays(self) -> list[OutboxRelayOut]:
        return [outbox_relay_out(report) for report in await relay_reports(self.redis, space=self.settings.keys)]

    # -- the history, one listener ---------------------------------------------------------------

    async def history(self, span: str = "1h", listener: str | None = None) -> HistoryOut:
        """The history over ``span``; first a sample of the gauges, if none was taken this interval
        (so queue depth and waiting jobs are charted while no worker runs)."""
        if span not in SPANS:
            raise ValidationException(f"unknown span {span!r}: use one of {', '.join(SPANS)}")
        if self.settings.history:
            await sample_if_due(self.redis, self.settings, "dashboard")
        return history_out(await read_history(self.redis, self.settings, span, listener=listener or None))

    async def listener_detail(self, name: str) -> ListenerDetailOut:
        listeners = {view.listener: view for view in await listener_views(self.redis, space=self.settings.keys)}
        stats = {s.listener: s for s in await read_listener_stats(self.redis, space=self.settings.keys)}
        if name not in listeners and name not in stats:
            raise NotFoundException(
                f"no listener {name!r}: no emitter routed it, no worker runs it, it has no counters"
            )
        entry = (await read_catalog(self.redis, space=self.settings.keys)).get(name)
        settings = self.settings
        page = await list_dead_letters(self.redis, listener=name, limit=5, space=settings.keys)
        return ListenerDetailOut(
            listener=listener_out(listeners.get(name), stats.get(name), name),
            reliable=entry.reliable if entry is not None else True,
            policy=policy_out(
                entry.policy if entry is not None else {},
                settings.default_policy,
                settings.job_timeout,
                described=entry is not None,
            ),
            dead_letters=[self._dead_out(letter) for letter in page.items],
        )
