"""The dashboard's cron schedules: a page and its JSON, pause, resume and trigger.

Schedules are what the schedulers registered in Redis (``taskemit.monitor.schedules``), so the
page shows every schedule of the namespace, whichever process runs it. A schedule is named in
the query string (``?name=``): names hold spaces and slashes (``tick@*/5 * * * *``).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import msgspec
from litestar import MediaType, Request, get, post
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import Parameter
from litestar.response import Redirect

from ..errors import NoLiveScheduler, ScheduleNotFound
from ..monitor.schedules import (
    ScheduleView,
    get_schedule,
    list_schedules,
    pause_schedule,
    resume_schedule,
    trigger_event_uuid,
    trigger_schedule,
)
from .html import Column, query
from .pages import DashboardController, html_error, plain
from .service import Conflict, DashboardData

__all__ = ("ScheduleActions", "ScheduleApiActions", "ScheduleApiReads", "ScheduleOut", "SchedulePages", "TriggerOut")

Name = Annotated[str, Parameter(description="The schedule's name (`taskemit cron list` shows them).")]


class ScheduleOut(msgspec.Struct, kw_only=True):
    """A cron schedule as its schedulers registered it; times in epoch seconds."""

    name: str
    event: str
    expression: str
    tz: str
    misfire: str
    max_lateness: float | None
    #: "paused" or "active"
    state: str
    paused_at: float | None
    last_fired: float | None
    #: the next tick the schedulers wait for (a paused schedule skips it)
    next_fire: float | None
    #: live schedulers that run it: 0, and nothing fires it
    schedulers: int
    updated_at: float | None


class TriggerOut(msgspec.Struct, kw_only=True):
    """A trigger request: a live scheduler publishes the event, with this uuid."""

    name: str
    request_id: str
    event_uuid: str


def _epoch(moment: dt.datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def schedule_out(view: ScheduleView) -> ScheduleOut:
    return ScheduleOut(
        name=view.name,
        event=view.event,
        expression=view.expression,
        tz=view.tz,
        misfire=view.misfire,
        max_lateness=view.max_lateness,
        state="paused" if view.paused else "active",
        paused_at=_epoch(view.paused_at),
        last_fired=_epoch(view.last_fired),
        next_fire=_epoch(view.next_fire),
        schedulers=view.schedulers,
        updated_at=_epoch(view.updated_at),
    )


async def schedules(data: DashboardData) -> list[ScheduleOut]:
    return [schedule_out(view) for view in await list_schedules(data.redis, space=data.settings.keys)]


async def _registered(data: DashboardData, name: str) -> None:
    if await get_schedule(data.redis, name, space=data.settings.keys) is None:
        raise NotFoundException(f"no cron schedule is named {name!r}")


async def _view(data: DashboardData, name: str) -> ScheduleOut:
    view = await get_schedule(data.redis, name, space=data.settings.keys)
    if view is None:
        raise NotFoundException(f"no cron schedule is named {name!r}")
    return schedule_out(view)


async def pause(data: DashboardData, name: str) -> ScheduleOut:
    await _registered(data, name)
    await pause_schedule(data.redis, name, space=data.settings.keys)
    return await _view(data, name)


async def resume(data: DashboardData, name: str) -> ScheduleOut:
    await _registered(data, name)
    await resume_schedule(data.redis, name, space=data.settings.keys)
    return await _view(data, name)


async def trigger(data: DashboardData, name: str) -> TriggerOut:
    try:
        request_id = await trigger_schedule(data.redis, name, space=data.settings.keys)
    except ScheduleNotFound:
        raise NotFoundException(f"no cron schedule is named {name!r}") from None
    except NoLiveScheduler:
        raise Conflict(f"no live scheduler runs {name!r}: nothing would fire it") from None
    return TriggerOut(name=name, request_id=request_id, event_uuid=trigger_event_uuid(request_id))


def schedule_columns(base: str) -> list[Column]:
    def action(verb: str) -> str:
        return f"{base}/schedules/{verb}?name={{name}}"

    return [
        Column("name", "name"),
        Column("event", "event"),
        Column("expression", "expression", "code"),
        Column("tz", "tz"),
        Column("next fire (UTC)", "next_fire", "time"),
        Column("last fired (UTC)", "last_fired", "time"),
        Column("state", "state", "status"),
        Column("schedulers", "schedulers", "number"),
        Column("misfire", "misfire"),
        Column("", "name", "action", href=action("pause"), label="pause", when=("state", ("active",))),
        Column("", "name", "action", href=action("resume"), label="resume", when=("state", ("paused",))),
        Column("", "name", "action", href=action("trigger"), label="trigger", confirm="Fire it now?"),
    ]


class SchedulePages(DashboardController):
    include_in_schema = False
    exception_handlers = {HTTPException: html_error}  # noqa: RUF012 - Litestar reads it off the class

    @get("/schedules", media_type=MediaType.HTML)
    async def schedules_page(
        self, request: Request[Any, Any, Any], notice: Annotated[str | None, Parameter()] = None
    ) -> str:
        d = self.dashboard
        page = d.page(request)
        data = plain(await schedules(d.data))
        table = page.table(schedule_columns(d.base), data, "", empty="no schedule registered (no scheduler ran yet)")
        note = (
            '<p class="muted">Schedules as their schedulers registered them. A trigger asks a live scheduler '
            "to fire the schedule once, now; pausing stops every scheduler from firing it.</p>"
        )
        return d.render(
            request, "Cron schedules", note + page.live(f"{d.api}/schedules", table), here="schedules", notice=notice
        )


class ScheduleActions(DashboardController):
    include_in_schema = False
    exception_handlers = {HTTPException: html_error}  # noqa: RUF012 - Litestar reads it off the class

    async def _back(self, notice: str) -> Redirect:
        return Redirect(query(f"{self.dashboard.base}/schedules", notice=notice), status_code=303)

    @post("/schedules/pause", status_code=303)
    async def pause_form(self, name: Name) -> Redirect:
        await pause(self.dashboard.data, name)
        return await self._back(f"Paused {name}")

    @post("/schedules/resume", status_code=303)
    async def resume_form(self, name: Name) -> Redirect:
        await resume(self.dashboard.data, name)
        return await self._back(f"Resumed {name}")

    @post("/schedules/trigger", status_code=303)
    async def trigger_form(self, name: Name) -> Redirect:
        try:
            done = await trigger(self.dashboard.data, name)
        except (Conflict, NotFoundException) as exc:
            return await self._back(str(exc.detail))
        return await self._back(f"Triggered {name}: its event will be {done.event_uuid}")


class ScheduleApiReads(DashboardController):
    path = "/api"
    tags = ["taskemit"]  # noqa: RUF012 - Litestar reads it off the class

    @get("/schedules", summary="Cron schedules, with their next fire times")
    async def list_schedules(self) -> list[ScheduleOut]:
        return await schedules(self.dashboard.data)


class ScheduleApiActions(DashboardController):
    path = "/api"
    tags = ["taskemit"]  # noqa: RUF012 - Litestar reads it off the class

    @post("/schedules/pause", status_code=200, summary="Pause a cron schedule")
    async def pause_schedule(self, name: Name) -> ScheduleOut:
        return await pause(self.dashboard.data, name)

    @post("/schedules/resume", status_code=200, summary="Resume a paused cron schedule")
    async def resume_schedule(self, name: Name) -> ScheduleOut:
        return await resume(self.dashboard.data, name)

    @post("/schedules/trigger", status_code=200, summary="Fire a cron schedule once, now")
    async def trigger_schedule(self, name: Name) -> TriggerOut:
        return await trigger(self.dashboard.data, name)
