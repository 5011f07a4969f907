"""The dashboard's HTML pages (GET, ``read_guards``): every page renders the JSON its API serves and
refreshes it live. Also what every controller of the dashboard shares (``Dashboard``,
``DashboardController``, ``html_error``) and the columns of its tables. The form posts of the pages'
buttons are in ``actions``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape
from typing import Annotated, Any, ClassVar
from urllib.parse import quote

import msgspec
from litestar import Controller, MediaType, Request, Response, get
from litestar.exceptions import HTTPException, ValidationException
from litestar.params import Parameter
from litestar.response import Redirect
from litestar.utils.empty import value_or_default
from litestar.utils.scope.state import ScopeState

from ..state import JobState
from .html import Column, Page, attr, field, fields, query, when
from .params import IdPart, PathId, Query, slashed, whole_id
from .service import DashboardData

__all__ = ("Dashboard", "DashboardController", "Pages", "html_error")

#: job states in which an abort still means something
_ABORTABLE = (JobState.QUEUED, JobState.DEFERRED, JobState.RETRYING, JobState.IN_PROGRESS)


@dataclass(frozen=True, slots=True)
class Dashboard:
    """What the dashboard's handlers share (``DashboardController.dashboard``)."""

    data: DashboardData
    base: str
    interval: float

    @property
    def api(self) -> str:
        return f"{self.base}/api"

    def page(self, request: Request[Any, Any, Any]) -> Page:
        token = value_or_default(ScopeState.from_scope(request.scope).csrf_token, "")
        return Page(self.base, str(token), self.interval)

    def render(self, request: Request[Any, Any, Any], title: str, body: str, *, here: str, notice: str | None) -> str:
        return self.page(request).render(title, body, here=here, notice=notice)


def plain(struct: Any) -> Any:
    """A struct as the JSON the API serves (what the page script receives too)."""
    return msgspec.to_builtins(struct)


def _state(status: str | None) -> JobState | None:
    if not status:
        return None
    try:
        return JobState(status)
    except ValueError:
        raise ValidationException(f"unknown status {status!r}") from None


def _input(name: str, label: str, value: str | None) -> str:
    return f'<label>{escape(label)}<input name="{name}" value="{attr(value or "")}"></label>'


def html_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[str]:
    """Errors of the HTML pages as a small HTML page (the API keeps Litestar's JSON errors)."""
    body = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{exc.status_code}</title></head>"
        f"<body><h1>{exc.status_code}</h1><p>{escape(exc.detail)}</p></body></html>"
    )
    return Response(body, status_code=exc.status_code, media_type=MediaType.HTML)


def event_columns(base: str) -> list[Column]:
    return [
        Column("emitted (UTC)", "emitted_at", "time"),
        Column("event", "event_id"),
        Column("uuid", "event_uuid", "link", href=f"{base}/events/{{event_uuid}}"),
        Column("status", "status", "status"),
        Column("jobs", "jobs", "jobs"),
    ]


def job_columns(base: str) -> list[Column]:
    return [
        Column("listener", "listener"),
        Column("job id", "job_id", "code", short=True),
        Column("status", "status", "status"),
        Column("tries", "attempts", "tries"),
        Column("started (UTC)", "started", "time"),
        Column("took", "duration", "duration"),
        Column("worker", "worker"),
        Column("outcome", "result", "outcome"),
        Column("attempts", "history", "history"),
        Column("", "job_id", "link", href=f"{base}/dead/{{job_id}}", label="dead letter", when=("status", ("failed",))),
        Column(
            "",
            "job_id",
            "action",
            href=f"{base}/events/{{event_uuid}}/jobs/{{job_id}}/abort",
            label="abort",
            confirm="Abort this job?",
            danger=True,
            when=("status", tuple(_ABORTABLE)),
        ),
    ]


def dead_columns(base: str) -> list[Column]:
    return [
        Column("job id", "job_id", "link", href=f"{base}/dead/{{job_id}}", short=True),
        Column("listener", "listener"),
        Column("event", "event_id"),
        Column("died (UTC)", "died_at", "time"),
        Column("tries", "tries", "number"),
        Column("reason", "reason"),
        Column("last error", "error", "error"),
        Column("", "job_id", "action", href=f"{base}/dead/{{job_id}}/replay", label="replay"),
    ]


def listener_columns(base: str) -> list[Column]:
    return [Column("listener", "listener", "link", href=f"{base}/listener?name={{listener}}"), *LISTENER_COLUMNS[1:]]


LISTENER_COLUMNS = [
    Column("listener", "listener"),
    Column("queue", "queue"),
    Column("mode", "mode"),
    Column("events", "events", "list"),
    Column("queued", "queued", "number"),
    Column("running", "running", "number"),
    Column("live workers", "workers", "number"),
    Column("dead letters", "dead_letters", "number"),
    Column("succeeded", "succeeded", "number"),
    Column("failed", "failed", "number"),
    Column("retried", "retried", "number"),
    Column("died", "died", "number"),
    Column("ok/s", "succeeded_per_s", "rate"),
    Column("failed/s", "failed_per_s", "rate"),
    Column("p50", "p50", "duration"),
    Column("p95", "p95", "duration"),
    Column("limits", "limits"),
    Column("in use", "in_use"),
    Column("waiting", "waiting", "number"),
]
WORKER_COLUMNS = [
    Column("worker", "worker_id", "code"),
    Column("host", "host"),
    Column("pid", "pid", "number"),
    Column("queues", "queues", "list"),
    Column("running", "jobs_running", "number"),
    Column("concurrency", "concurrency", "number"),
    Column("complete", "jobs_complete", "number"),
    Column("failed", "jobs_failed", "number"),
    Column("retried", "jobs_retried", "number"),
    Column("up since (UTC)", "started", "time"),
    Column("last seen", "last_seen", "age"),
    Column("loop lag", "loop_lag", "duration"),
    Column("Redis outages", "outages", "number"),
]
OUTBOX_COLUMNS = [
    Column("relay", "relay_id", "code"),
    Column("database", "database"),
    Column("table", "table"),
    Column("claims", "claims"),
    Column("waiting", "backlog", "number"),
    Column("lag", "lag", "duration"),
    Column("relayed", "relayed", "number"),
    Column("errors", "errors", "number"),
    Column("last error", "last_error"),
    Column("last seen", "reported", "age"),
]
QUEUE_COLUMNS = [
    Column("queue", "queue"),
    Column("queued", "queued", "number"),
    Column("running", "running", "number"),
    Column("delayed", "delayed", "number"),
    Column("listeners", "listeners", "number"),
    Column("live workers", "workers", "number"),
]
ATTEMPT_COLUMNS = [
    Column("#", "attempt", "number"),
    Column("status", "status", "status"),
    Column("started (UTC)", "started", "time"),
    Column("finished (UTC)", "finished", "time"),
    Column("worker", "worker"),
    Column("error", "error", "error"),
]


class DashboardController(Controller):
    """A controller of the dashboard: the plugin subclasses it with its ``Dashboard`` and guards."""

    dashboard: ClassVar[Dashboard]


class Pages(DashboardController):
    """GET pages; the plugin subclasses it with the ``read_guards``."""

    include_in_schema = False
    exception_handlers = {HTTPException: html_error}  # noqa: RUF012 - Litestar reads it off the class

    @get("/", media_type=MediaType.HTML)
    async def index(self) -> Redirect:
        return Redirect(f"{self.dashboard.base}/overview")

    @get("/events", media_type=MediaType.HTML)
    async def events_page(
        self,
        request: Request[Any, Any, Any],
        event_id: Query = None,
        status: Query = None,
        cursor: Query = None,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 20,
        notice: Query = None,
    ) -> str:
        d = self.dashboard
        page = d.page(request)
        data = plain(await d.data.events(event_id=event_id, status=_state(status), limit=limit, cursor=cursor))
        options = "".join(
            f'<option value="{s.value}"{" selected" if s.value == status else ""}>{s.value}</option>' for s in JobState
        )
        filters = (
            f'<form class="filters" method="get" action="{attr(d.base)}/events">'
            f"{_input('event_id', 'event id', event_id)}"
            f'<label>status<select name="status"><option value="">any</option>{options}</select></label>'
            "<button>Filter</button></form>"
        )
        src = query(f"{d.api}/events", event_id=event_id, status=status, cursor=cursor, limit=limit)
        body = filters + page.live(src, page.table(event_columns(d.base), data, "items", empty="no events"))
        if data["next_cursor"]:
            more = query(f"{d.base}/events", event_id=event_id, status=status, limit=limit, cursor=data["next_cursor"])
            body += f'<p><a href="{attr(more)}">More (older)</a></p>'
        return d.render(request, "Events", body, here="events", notice=notice)

    @get("/events/{event_uuid:str}", media_type=MediaType.HTML)
    async def event_page(self, request: Request[Any, Any, Any], event_uuid: PathId, notice: Query = None) -> str:
        d = self.dashboard
        page = d.page(request)
        data = plain(await d.data.event(event_uuid))
        rows = [
            ("event", escape(data["event_id"])),
            ("uuid", f"<code>{escape(data['event_uuid'])}</code>"),
            ("emitted (UTC)", when(data["emitted_at"])),
            ("status", field(data, "status", "status")),
        ]
        if data.get("cause"):  # emitted by a listener of that event
            cause = data["cause"]
            link = f'<a href="{attr(d.base)}/events/{quote(cause, safe="")}"><code>{escape(cause)}</code></a>'
            rows.append(("caused by", link))
        summary = fields(rows)
        jobs = "<h2>Listener jobs</h2>" + page.table(job_columns(d.base), data, "jobs", empty="no jobs")
        body = page.live(f"{d.api}/events/{quote(event_uuid, safe='')}", summary + jobs)
        return d.render(request, f"Event {data['event_id']}", body, here="events", notice=notice)

    @get("/dead", media_type=MediaType.HTML)
    async def dead_page(
        self,
        request: Request[Any, Any, Any],
        listener: Query = None,
        event: Query = None,
        cursor: Annotated[int, Parameter(ge=0)] = 0,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 50,
        notice: Query = None,
    ) -> str:
        d = self.dashboard
        page = d.page(request)
        data = plain(await d.data.dead_letters(listener=listener, event=event, limit=limit, cursor=cursor))
        filters = (
            f'<form class="filters" method="get" action="{attr(d.base)}/dead">'
            f"{_input('listener', 'listener', listener)}{_input('event', 'event id', event)}"
            "<button>Filter</button></form>"
        )
        src = query(f"{d.api}/dead", listener=listener, event=event, cursor=cursor or None, limit=limit)
        body = filters + page.live(src, page.table(dead_columns(d.base), data, "items", empty="no dead letters"))
        if data["next_cursor"] is not None:
            more = query(f"{d.base}/dead", listener=listener, event=event, limit=limit, cursor=data["next_cursor"])
            body += f'<p><a href="{attr(more)}">More (older)</a></p>'
        scope = " and ".join(filter(None, [listener and f"listener {listener}", event and f"event {event}"]))
        matching = f" of {scope}" if scope else ""
        replay = page.form(
            query(f"{d.base}/dead/replay", listener=listener, event=event),
            f"Replay all{matching}",
            confirm=f"Replay every dead letter{matching}?",
        )
        purge = page.form(
            query(f"{d.base}/dead/purge", listener=listener, event=event),
            f"Purge all{matching}",
            confirm=f"Delete every dead letter{matching} for good?",
            danger=True,
        )
        body += f"<h2>Every dead letter{escape(matching)}</h2><p>{replay} {purge}</p>"
        return d.render(request, "Dead letters", body, here="dead", notice=notice)

    @get(slashed("/dead/{job_id:str}"), media_type=MediaType.HTML)
    async def dead_letter_page(
        self,
        request: Request[Any, Any, Any],
        job_id: PathId,
        notice: Query = None,
        job_id_2: IdPart = None,
        job_id_3: IdPart = None,
    ) -> str:
        d = self.dashboard
        job_id = whole_id(job_id, job_id_2, job_id_3)
        page = d.page(request)
        data = plain(await d.data.dead_letter(job_id))
        event = escape(data["event_id"] or "")
        if data["event_uuid"]:
            event = f'<a href="{attr(d.base)}/events/{attr(quote(data["event_uuid"], safe=""))}">{event}</a>'
        error = data["error"]
        where = "".join(f"\n  {line}" for line in error["where"])
        arguments = data["arguments"] if data["undecodable"] is None else {"undecodable": data["undecodable"]}
        summary = fields(
            [
                ("job id", f"<code>{escape(data['job_id'])}</code>"),
                ("listener", escape(data["listener"])),
                ("event", event),
                ("queue", escape(data["queue"] or "")),
                ("reason", escape(data["reason"])),
                ("enqueued (UTC)", when(data["enqueued_at"])),
                ("died (UTC)", when(data["died_at"])),
                ("error", f"<pre>{escape(error['type'] + ': ' + error['message'] + where)}</pre>"),
                ("arguments", f"<pre>{escape(json.dumps(arguments, indent=2, default=str))}</pre>"),
            ]
        )
        actions = "<p>" + page.form(f"{d.base}/dead/{quote(job_id, safe='')}/replay", "Replay") + "</p>"
        attempts = "<h2>Attempts</h2>" + page.table(ATTEMPT_COLUMNS, data, "attempts", empty="no attempts recorded")
        return d.render(request, "Dead letter", summary + actions + attempts, here="dead", notice=notice)

    @get("/listeners", media_type=MediaType.HTML)
    async def listeners_page(self, request: Request[Any, Any, Any]) -> str:
        d = self.dashboard
        page = d.page(request)
        data = plain(await d.data.listeners())
        columns = listener_columns(d.base)
        body = page.live(f"{d.api}/listeners", page.table(columns, data, "", empty="no listeners yet"))
        return d.render(request, "Listeners", body, here="listeners", notice=None)

    @get("/workers", media_type=MediaType.HTML)
    async def workers_page(self, request: Request[Any, Any, Any]) -> str:
        d = self.dashboard
        page = d.page(request)
        workers = plain(await d.data.workers())
        queues = plain(await d.data.queues())
        relays = plain(await d.data.outbox_relays())
        body = (
            "<h2>Live workers</h2>"
            + page.live(f"{d.api}/workers", page.table(WORKER_COLUMNS, workers, "", empty="no live worker"))
            + "<h2>Queues</h2>"
            + page.live(f"{d.api}/queues", page.table(QUEUE_COLUMNS, queues, ""))
            + "<h2>Outbox relays</h2>"
            + page.live(f"{d.api}/outbox", page.table(OUTBOX_COLUMNS, relays, "", empty="no outbox relay reports"))
        )
        return d.render(request, "Workers and queues", body, here="workers", notice=None)
