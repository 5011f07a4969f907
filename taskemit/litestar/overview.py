"""The dashboard's overview (its landing page) and listener pages: charts of the history, and the
JSON they are drawn from.

The charts are SVG rendered here (``charts.py``). With JavaScript, each page's live box refreshes
every ``refresh_interval`` seconds by fetching its ``/live`` fragment (the same server-rendered
HTML) and swapping it in; without JavaScript the page shows the same charts, and the points as a
table. The JSON twins are ``/api/history`` and ``/api/listener``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape
from typing import Annotated, Any

from litestar import MediaType, Request, get
from litestar.exceptions import HTTPException
from litestar.params import Parameter
from litestar.response import Response

from ..monitor.series import SPANS
from .charts import Series, line_chart
from .html import Column, Page, attr, fields, query, table
from .overview_schemas import HistoryOut, HistoryPointOut, ListenerDetailOut
from .pages import Dashboard, DashboardController, dead_columns, html_error, plain

__all__ = ("OverviewApiReads", "OverviewPages", "seconds_text")

SpanParam = Annotated[
    str, Parameter(description="`1h` (a point per minute), `24h` (per 5 minutes) or `30d` (per hour).")
]
ListenerParam = Annotated[str | None, Parameter(description="Only this listener's attempts and queued jobs.")]
NameParam = Annotated[str, Parameter(description="The listener's name (`taskemit listeners` shows them).")]

SPAN_TITLES = {"1h": "Last hour, per minute", "24h": "Last 24 hours, per 5 minutes", "30d": "Last 30 days, per hour"}

SUMMARY_COLUMNS_TEMPLATE = [
    ("listener", "listener", "link"),
    ("completed", "succeeded", "number"),
    ("failed", "failed", "number"),
    ("retried", "retried", "number"),
    ("died", "dead", "number"),
    ("run time p50", "run_time_p50", "duration"),
    ("run time p95", "run_time_p95", "duration"),
    ("emit to start p50", "latency_p50", "duration"),
    ("emit to start p95", "latency_p95", "duration"),
]
POINT_COLUMNS = [
    Column("bucket (UTC)", "at", "time"),
    Column("completed", "succeeded", "number"),
    Column("failed", "failed", "number"),
    Column("retried", "retried", "number"),
    Column("died", "dead", "number"),
    Column("run time p50", "run_time_p50", "duration"),
    Column("run time p95", "run_time_p95", "duration"),
    Column("emit to start p50", "latency_p50", "duration"),
    Column("emit to start p95", "latency_p95", "duration"),
    Column("queued", "queued_total", "number"),
    Column("waiting for a worker", "waiting", "number"),
    Column("live workers", "workers", "number"),
    Column("busy slots", "busy", "number"),
]


def seconds_text(value: float) -> str:
    """Seconds as people read them: ``850 µs``, ``2.5 ms``, ``1.2 s``, ``4 min``."""
    if value == 0:
        return "0"
    if value < 0.001:
        return f"{value * 1e6:.0f} µs"
    if value < 1:
        return f"{value * 1000:.3g} ms"
    if value < 120:
        return f"{value:.3g} s"
    return f"{value / 60:.3g} min"


def _count(value: float) -> str:
    return f"{round(value, 2):g}"


def _rate(value: float) -> str:
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _gauge(points: Sequence[HistoryPointOut], value: Callable[[HistoryPointOut], float | None]) -> list[float | None]:
    return [value(point) if point.samples else None for point in points]


def charts(history: HistoryOut) -> str:
    """The five charts of a history: throughput, queues, run time, latency, workers."""
    points = history.points
    times = [point.at for point in points]
    step = history.step
    one = history.listener
    queued = [
        Series("queued" if one else f"queued: {name}", [p.queued.get(name, 0.0) if p.samples else None for p in points])
        for name in history.queues
    ]
    waiting = Series("waiting for a worker", _gauge(points, lambda p: p.waiting), dashed=True)
    drawn = [
        line_chart(
            "Jobs completed and failed per second",
            times,
            step,
            [
                Series("completed/s", [p.succeeded_per_s for p in points]),
                Series("failed/s", [p.failed_per_s for p in points]),
            ],
            _rate,
            minimum_top=0.1,
        ),
        line_chart("Queued jobs, and jobs waiting for a worker", times, step, [*queued, waiting], _count),
        line_chart(
            "Run time",
            times,
            step,
            [Series("p50", [p.run_time_p50 for p in points]), Series("p95", [p.run_time_p95 for p in points])],
            seconds_text,
            minimum_top=0.001,
        ),
        line_chart(
            "From emit to start (first attempts)",
            times,
            step,
            [Series("p50", [p.latency_p50 for p in points]), Series("p95", [p.latency_p95 for p in points])],
            seconds_text,
            minimum_top=0.001,
        ),
        line_chart(
            "Live workers and busy slots" + (" (all listeners)" if one else ""),
            times,
            step,
            [
                Series("busy slots", _gauge(points, lambda p: p.busy)),
                Series("live workers", _gauge(points, lambda p: p.workers)),
            ],
            _count,
            minimum_top=1,
        ),
    ]
    return '<div class="charts">' + "".join(drawn) + "</div>"


def summary_columns(base: str) -> list[Column]:
    return [
        Column(title, key, kind, href=f"{base}/listener?name={{listener}}" if kind == "link" else "")
        for title, key, kind in SUMMARY_COLUMNS_TEMPLATE
    ]


def failure_columns(base: str) -> list[Column]:
    return [
        Column("listener", "listener", "link", href=f"{base}/listener?name={{listener}}"),
        Column("error type", "error_type", "code"),
        Column("failed attempts", "count", "number"),
        Column("last message", "last_message"),
        Column("last seen (UTC)", "last_seen", "time"),
    ]


def point_rows(history: HistoryOut) -> dict[str, Any]:
    """The points with anything in them, newest first, as rows of the JavaScript-free table."""
    rows = []
    for point in reversed(history.points):
        if not (point.succeeded or point.failed or point.dead or point.samples):
            continue
        row = plain(point)
        row["queued_total"] = round(sum(point.queued.values()), 2) if point.samples else None
        for name in ("waiting", "workers", "busy"):
            row[name] = None if row[name] is None else round(row[name], 2)
        rows.append(row)
    return {"rows": rows}


def live_body(d: Dashboard, history: HistoryOut, csrf_token: str) -> str:
    """What the live box holds, and what its ``/live`` fragment returns: charts and tables."""
    data = plain(history)
    body = charts(history)
    if history.listener is None:
        body += "<h2>Listeners</h2>" + table(
            summary_columns(d.base), data, "listeners", csrf_token, empty="no attempts in this span"
        )
    body += "<h2>Failures by error type</h2>" + table(
        failure_columns(d.base), data, "failures", csrf_token, empty="no failures in this span"
    )
    return body


def live_box(page: Page, src: str, inner: str) -> str:
    """A box whose content the page script replaces with the HTML at ``src`` every refresh."""
    return (
        f'<div class="live" data-html="{attr(src)}" data-interval="{int(page.interval * 1000)}">'
        f'<span class="live-state"></span><div class="live-body">{inner}</div></div>'
    )


def span_links(base: str, path: str, span: str, **params: Any) -> str:
    links = " ".join(
        f'<a href="{attr(query(f"{base}{path}", span=name, **params))}"{" class=here" if name == span else ""}>'
        f"{escape(name)}</a>"
        for name in SPANS
    )
    return f'<nav class="spans">{links} <span class="muted">{escape(SPAN_TITLES[span])}, UTC</span></nav>'


def no_script_table(history: HistoryOut, csrf_token: str) -> str:
    return (
        "<noscript><h2>Points</h2>"
        + table(POINT_COLUMNS, point_rows(history), "rows", csrf_token, empty="nothing recorded in this span")
        + "</noscript>"
    )


def _fragment(body: str) -> Response[str]:
    return Response(body, media_type=MediaType.HTML, headers={"cache-control": "no-store"})


class OverviewPages(DashboardController):
    """The overview and listener pages and their live fragments; the plugin adds the ``read_guards``."""

    include_in_schema = False
    exception_handlers = {HTTPException: html_error}  # noqa: RUF012 - Litestar reads it off the class

    @get("/overview", media_type=MediaType.HTML)
    async def overview_page(
        self, request: Request[Any, Any, Any], span: SpanParam = "1h", listener: ListenerParam = None
    ) -> str:
        d = self.dashboard
        page = d.page(request)
        history = await d.data.history(span, listener)
        names = sorted(item.listener for item in await d.data.listeners())
        options = "".join(
            f'<option value="{attr(name)}"{" selected" if name == listener else ""}>{escape(name)}</option>'
            for name in names
        )
        filters = (
            f'<form class="filters" method="get" action="{attr(d.base)}/overview">'
            f'<input type="hidden" name="span" value="{attr(span)}">'
            f'<label>listener<select name="listener"><option value="">all</option>{options}</select></label>'
            "<button>Show</button></form>"
        )
        src = query(f"{d.base}/overview/live", span=span, listener=listener)
        body = (
            filters
            + span_links(d.base, "/overview", span, listener=listener)
            + live_box(page, src, live_body(d, history, page.csrf_token))
            + no_script_table(history, page.csrf_token)
        )
        title = f"Overview: {listener}" if listener else "Overview"
        return d.render(request, title, body, here="overview", notice=None)

    @get("/overview/live", media_type=MediaType.HTML)
    async def overview_live(
        self, request: Request[Any, Any, Any], span: SpanParam = "1h", listener: ListenerParam = None
    ) -> Response[str]:
        d = self.dashboard
        history = await d.data.history(span, listener)
        return _fragment(live_body(d, history, d.page(request).csrf_token))

    @get("/listener", media_type=MediaType.HTML)
    async def listener_page(self, request: Request[Any, Any, Any], name: NameParam, span: SpanParam = "1h") -> str:
        d = self.dashboard
        page = d.page(request)
        detail = await d.data.listener_detail(name)
        history = await d.data.history(span, name)
        src = query(f"{d.base}/listener/live", name=name, span=span)
        body = (
            listener_facts(d.base, detail)
            + "<h2>Retries and limits</h2>"
            + policy_facts(detail)
            + "<h2>History</h2>"
            + span_links(d.base, "/listener", span, name=name)
            + live_box(page, src, live_body(d, history, page.csrf_token))
            + no_script_table(history, page.csrf_token)
            + "<h2>Newest dead letters</h2>"
            + page.table(dead_columns(d.base), plain(detail), "dead_letters", empty="no dead letters")
            + f'<p><a href="{attr(query(f"{d.base}/dead", listener=name))}">Every dead letter of {escape(name)}</a></p>'
        )
        return d.render(request, f"Listener {name}", body, here="listeners", notice=None)

    @get("/listener/live", media_type=MediaType.HTML)
    async def listener_live(
        self, request: Request[Any, Any, Any], name: NameParam, span: SpanParam = "1h"
    ) -> Response[str]:
        d = self.dashboard
        history = await d.data.history(span, name)
        return _fragment(live_body(d, history, d.page(request).csrf_token))


def listener_facts(base: str, detail: ListenerDetailOut) -> str:
    item = detail.listener
    dead = f'<a href="{attr(query(f"{base}/dead", listener=item.listener))}">{item.dead_letters}</a>'
    delivery = "reliable: its jobs wait for a worker" if detail.reliable else "dropped when no live worker serves it"
    return fields(
        [
            ("queue", escape(item.queue)),
            ("mode", escape(item.mode)),
            ("events", escape(", ".join(item.events))),
            ("delivery", escape(delivery)),
            ("live workers", str(item.workers)),
            ("queued, running", f"{item.queued}, {item.running}"),
            ("dead letters kept", dead),
            (
                "attempts, ever",
                escape(f"{item.succeeded} succeeded, {item.failed} failed ({item.retried} retried), {item.died} died"),
            ),
        ]
    )


def policy_facts(detail: ListenerDetailOut) -> str:
    policy = detail.policy

    def source(*names: str) -> str:
        own = any(name in policy.declared for name in names)
        return f' <span class="muted">({"the listener" if own else "settings"})</span>'

    waits = ", ".join(seconds_text(delay) for delay in policy.delays) or "none (one try)"
    if policy.jitter != "none" and policy.delays:
        waits += f" (jitter {policy.jitter}: up to these)"
    rows = [
        ("tries", f"{policy.max_tries}{source('max_tries')}"),
        ("backoff", f"<code>{escape(policy.backoff)}</code>{source('backoff')}"),
        ("waits between tries", escape(waits)),
        ("retried on", escape(", ".join(policy.retry_on) or "nothing") + source("retry_on")),
        ("never retried on", escape(", ".join(policy.give_up_on) or "-") + source("give_up_on")),
        ("time limit per attempt", escape(seconds_text(policy.timeout)) + source("timeout")),
    ]
    note = (
        ""
        if policy.described
        else '<p class="muted">No worker has described this listener yet: the settings\' policy is shown.</p>'
    )
    item = detail.listener
    if item.limits:  # its flow control (flow-control.md)
        rows += [("flow control", escape(item.limits)), ("in use", escape(item.in_use)), ("waiting", str(item.waiting))]
    return fields(rows) + note


class OverviewApiReads(DashboardController):
    """The history and one listener as JSON; the plugin subclasses it with the ``read_guards``."""

    path = "/api"
    tags = ["taskemit"]  # noqa: RUF012 - Litestar reads it off the class

    @get("/history", summary="Completed and failed jobs, run time, latency, queue depth and busy workers over time")
    async def get_history(self, span: SpanParam = "1h", listener: ListenerParam = None) -> HistoryOut:
        return await self.dashboard.data.history(span, listener)

    @get("/listener", summary="One listener: its counters, retry policy and limits, newest dead letters")
    async def get_listener(self, name: NameParam) -> ListenerDetailOut:
        return await self.dashboard.data.listener_detail(name)
