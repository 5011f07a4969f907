"""The dashboard's JSON API, under ``{dashboard_path}/api``: what every page shows, and its actions.

Reads are GETs behind the ``read_guards``; actions are POSTs behind the ``guards`` and the
CSRF check (send the CSRF cookie's token back in the ``x-csrftoken`` header, or whatever
header the app's ``CSRFConfig`` names).
"""

from __future__ import annotations

from typing import Annotated

from litestar import get, post
from litestar.params import Parameter

from ..state import JobState
from .pages import DashboardController
from .params import IdPart, PathId, Query, slashed, whole_id
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
    WorkerOut,
)

__all__ = ("ApiActions", "ApiReads")

Limit = Annotated[int, Parameter(ge=1, le=1000, description="Page size.")]


class ApiReads(DashboardController):
    """GET endpoints; the plugin subclasses it with the ``read_guards``."""

    path = "/api"
    tags = ["taskemit"]  # noqa: RUF012 - Litestar reads it off the class

    @get("/events", summary="Recent events, newest first")
    async def list_events(
        self,
        event_id: Annotated[str | None, Parameter(description="Only events with this event id.")] = None,
        status: Annotated[JobState | None, Parameter(description="Only events in this status.")] = None,
        since: Annotated[float | None, Parameter(description="Emitted at or after (epoch seconds).")] = None,
        until: Annotated[float | None, Parameter(description="Emitted at or before (epoch seconds).")] = None,
        limit: Limit = 20,
        cursor: Annotated[str | None, Parameter(description="next_cursor of the previous page.")] = None,
    ) -> EventPageOut:
        return await self.dashboard.data.events(
            event_id=event_id, status=status, since=since, until=until, limit=limit, cursor=cursor
        )

    @get("/events/{event_uuid:str}", summary="One event and its listener jobs, with their attempts")
    async def get_event(self, event_uuid: PathId) -> EventOut:
        return await self.dashboard.data.event(event_uuid)

    @get("/jobs/{job_id:str}", summary="One listener job, with its attempts")
    async def get_job(self, job_id: PathId) -> JobOut:
        return await self.dashboard.data.job(job_id)

    @get(slashed("/jobs/{job_id:str}")[1:], include_in_schema=False)
    async def get_job_slashed(self, job_id: PathId, job_id_2: PathId, job_id_3: IdPart = None) -> JobOut:
        """``get_job`` of a job id with '/' in its hash tag (``params.slashed``)."""
        return await self.dashboard.data.job(whole_id(job_id, job_id_2, job_id_3))

    @get("/dead", summary="Dead letters, newest first")
    async def list_dead_letters(
        self,
        listener: Annotated[str | None, Parameter(description="Only this listener's.")] = None,
        event: Annotated[str | None, Parameter(description="Only this event id's.")] = None,
        limit: Limit = 50,
        cursor: Annotated[int, Parameter(ge=0, description="next_cursor of the previous page.")] = 0,
    ) -> DeadLetterPageOut:
        return await self.dashboard.data.dead_letters(listener=listener, event=event, limit=limit, cursor=cursor)

    @get("/dead/{job_id:str}", summary="One dead letter, its arguments (redacted) and attempts")
    async def get_dead_letter(self, job_id: PathId) -> DeadLetterOut:
        return await self.dashboard.data.dead_letter(job_id)

    @get(slashed("/dead/{job_id:str}")[1:], include_in_schema=False)
    async def get_dead_letter_slashed(self, job_id: PathId, job_id_2: PathId, job_id_3: IdPart = None) -> DeadLetterOut:
        """``get_dead_letter`` of a job id with '/' in its hash tag (``params.slashed``)."""
        return await self.dashboard.data.dead_letter(whole_id(job_id, job_id_2, job_id_3))

    @get("/listeners", summary="Per listener: queue, jobs waiting and running, workers, counters")
    async def list_listeners(self) -> list[ListenerOut]:
        return await self.dashboard.data.listeners()

    @get("/workers", summary="Live workers, from their heartbeats")
    async def list_workers(self) -> list[WorkerOut]:
        return await self.dashboard.data.workers()

    @get("/queues", summary="Queue depth per queue")
    async def list_queues(self) -> list[QueueOut]:
        return await self.dashboard.data.queues()

    @get("/outbox", summary="Live outbox relays: database, rows waiting, lag, errors")
    async def list_outbox_relays(self) -> list[OutboxRelayOut]:
        return await self.dashboard.data.outbox_relays()


class ApiActions(DashboardController):
    """POST endpoints; the plugin subclasses it with the ``guards``."""

    path = "/api"
    tags = ["taskemit"]  # noqa: RUF012 - Litestar reads it off the class

    @post("/dead/{job_id:str}/replay", status_code=200, summary="Replay one dead letter")
    async def replay_dead_letter(self, job_id: PathId) -> ReplayOut:
        return await self.dashboard.data.replay(job_id)

    @post(slashed("/dead/{job_id:str}", "/replay")[1:], status_code=200, include_in_schema=False)
    async def replay_dead_letter_slashed(self, job_id: PathId, job_id_2: PathId, job_id_3: IdPart = None) -> ReplayOut:
        """``replay_dead_letter`` of a job id with '/' in its hash tag (``params.slashed``)."""
        return await self.dashboard.data.replay(whole_id(job_id, job_id_2, job_id_3))

    @post("/dead/replay", status_code=200, summary="Replay every dead letter matching the filters")
    async def replay_dead_letters(self, listener: Query = None, event: Query = None) -> ReplayAllOut:
        return await self.dashboard.data.replay_all(listener=listener, event=event)

    @post("/dead/purge", status_code=200, summary="Delete every dead letter matching the filters")
    async def purge_dead_letters(self, listener: Query = None, event: Query = None) -> PurgeOut:
        return await self.dashboard.data.purge(listener=listener, event=event)

    @post("/jobs/{job_id:str}/abort", status_code=200, summary="Abort a waiting or running job")
    async def abort_job(self, job_id: PathId) -> AbortOut:
        return await self.dashboard.data.abort(job_id)

    @post(slashed("/jobs/{job_id:str}", "/abort")[1:], status_code=200, include_in_schema=False)
    async def abort_job_slashed(self, job_id: PathId, job_id_2: PathId, job_id_3: IdPart = None) -> AbortOut:
        """``abort_job`` of a job id with '/' in its hash tag (``params.slashed``)."""
        return await self.dashboard.data.abort(whole_id(job_id, job_id_2, job_id_3))
