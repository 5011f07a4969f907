"""``taskemit stats``: per listener and queue, the counters now and their history as sparklines."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import click
from redis import asyncio as aioredis
from rich.console import Group, RenderableType
from rich.table import Table

from ..monitor.history import sample_if_due
from ..monitor.series import SPANS, History, HistoryPoint, read_history
from ..monitor.stats import read_listener_stats
from ..monitor.workers import listener_views, live_workers
from ..settings import Settings
from ..state import JobState
from ._output import sparkline
from .monitor import _ms, _show, interval_option, json_option, watch_option

__all__ = ("stats",)


def _history_rows(history: History) -> list[tuple[str, list[float | None], Callable[[float], str]]]:
    """The history's series as (title, values, format), as the dashboard's overview charts them."""
    points = history.points

    def gauge(value: Callable[[HistoryPoint], float | None]) -> list[float | None]:
        return [value(p) if p.samples else None for p in points]

    def rate(v: float) -> str:
        return f"{v:.2f}"

    def count(v: float) -> str:
        return f"{v:.1f}"

    return [
        ("completed/s", [p.succeeded_per_s for p in points], rate),
        ("failed/s", [p.failed_per_s for p in points], rate),
        ("queued", gauge(lambda p: sum(p.queued.values())), count),
        ("waiting for a worker", gauge(lambda p: p.waiting), count),
        ("busy slots", gauge(lambda p: p.busy), count),
        ("live workers", gauge(lambda p: p.workers), count),
        ("run time p95", [p.run_time_p95 for p in points], _ms),
        ("emit to start p95", [p.latency_p95 for p in points], _ms),
    ]


@click.command()
@click.option(
    "--span",
    type=click.Choice(list(SPANS)),
    default="1h",
    show_default=True,
    help="History shown: the last hour per minute, 24 hours per 5 minutes, 30 days per hour.",
)
@json_option
@watch_option
@interval_option
def stats(span: str, as_json: bool, watch: bool, interval: float) -> None:
    """Per listener and per queue: queued, running, rates, failures, p50/p95 durations; and their
    history (completed and failed per second, queue depth, busy workers, run time, emit-to-start
    latency) as sparklines; and the flow control of the listeners that declare any (limits, in
    use, waiting, behind keys, tokens, next token)."""

    async def fetch(redis: aioredis.Redis, settings: Settings) -> dict[str, Any]:
        now_ms = time.time() * 1000
        if settings.history:  # a sample of queue depth and workers, unless one was taken this interval
            await sample_if_due(redis, settings, "cli")
        workers = await live_workers(redis, settings.queue_name, space=settings.keys)
        running: dict[str, int] = {}
        for worker in workers:
            for name, count in worker.running.items():
                running[name] = running.get(name, 0) + count
        listeners = []
        for s in await read_listener_stats(redis, space=settings.keys):
            own = await read_history(redis, settings, span, listener=s.listener)
            listeners.append(
                {
                    "listener": s.listener,
                    "succeeded": s.succeeded,
                    "failed": s.failed,
                    "retried": s.retried,
                    "dead": s.dead,
                    "running": running.get(s.listener, 0),
                    "succeeded_per_s": s.succeeded_rate,
                    "failed_per_s": s.failed_rate,
                    "p50": s.p50,
                    "p95": s.p95,
                    "mean": s.mean,
                    "history": [p.succeeded + p.failed for p in own.points],
                }
            )
        queue = {
            "queue": settings.queue_name,
            JobState.QUEUED: await redis.zcount(settings.queue_key, "-inf", now_ms),
            JobState.DEFERRED: await redis.zcount(settings.queue_key, f"({now_ms}", "+inf"),
            JobState.IN_PROGRESS: sum(w.jobs_running for w in workers),
            "workers": len(workers),
        }
        history = await read_history(redis, settings, span)
        views = await listener_views(redis, space=settings.keys)
        flow = [view.flow.to_dict() for view in views if view.flow is not None]
        return {
            "queue": queue,
            "listeners": listeners,
            "flow": flow,
            "history": history.to_dict(),
            "_history": history,
        }

    def render(data: dict[str, Any]) -> RenderableType:
        q = data["queue"]
        queue = Table(title="Queue", title_justify="left")
        for column in ("queue", "queued", "deferred", "in progress", "live workers"):
            queue.add_column(column)
        queue.add_row(q["queue"], str(q["queued"]), str(q["deferred"]), str(q["in_progress"]), str(q["workers"]))
        history: History = data["_history"]
        where = {"1h": "last hour, a character per minute", "24h": "last 24 hours", "30d": "last 30 days"}
        trend = Table(title=f"History ({where[history.span]}; UTC)", title_justify="left")
        for column in ("", "trend", "now", "peak"):
            trend.add_column(column, justify="left" if column in ("", "trend") else "right")
        for title, values, fmt in _history_rows(history):
            recent = next((v for v in reversed(values) if v is not None), None)
            peak = max((v for v in values if v is not None), default=None)
            trend.add_row(
                title,
                f"[cyan]{sparkline(values)}[/]",
                "" if recent is None else fmt(recent),
                "" if peak is None else fmt(peak),
            )
        table = Table(title="Listeners", title_justify="left")
        for column in (
            "listener",
            "succeeded",
            "failed",
            "retried",
            "dead",
            "running",
            "ok/s",
            "failed/s",
            "p50",
            "p95",
            "attempts",
        ):
            table.add_column(column, overflow="fold", justify="left" if column in ("listener", "attempts") else "right")
        for s in data["listeners"]:
            table.add_row(
                s["listener"],
                str(s["succeeded"]),
                f"[red]{s['failed']}[/]" if s["failed"] else "0",
                str(s["retried"]),
                f"[red]{s['dead']}[/]" if s["dead"] else "0",
                str(s["running"]),
                f"{s['succeeded_per_s']:.2f}",
                f"{s['failed_per_s']:.2f}",
                _ms(s["p50"]),
                _ms(s["p95"]),
                f"[cyan]{sparkline(s['history'], 30)}[/]",
            )
        return Group(queue, trend, table, _flow_table(data["flow"])) if data["flow"] else Group(queue, trend, table)

    def to_json(data: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in data.items() if not key.startswith("_")}

    _show(fetch, render, to_json, as_json=as_json, watch=watch, interval=interval)


def _flow_table(flows: list[dict[str, Any]]) -> Table:
    """The listeners' flow control (``FlowState.to_dict``): limits, slots used, what waits, tokens."""
    table = Table(title="Flow control", title_justify="left")
    columns = ("listener", "limits", "running", "waiting", "behind keys", "tokens", "next token", "busiest keys")
    for column in columns:
        table.add_column(column, overflow="fold", justify="left" if column in ("listener", "limits") else "right")
    now = time.time()
    for f in flows:
        limit = f["declared"].get("concurrency")
        tokens = "" if f["tokens"] is None else f"{f['tokens']:.2f}"
        next_token = "" if f["next_token_at"] is None else f"in {max(0.0, f['next_token_at'] - now):.2f}s"
        table.add_row(
            f["listener"],
            f["limits"],
            f"{f['running']}/{limit}" if limit else str(f["running"]),
            str(f["waiting"]),
            str(f["behind_keys"]),
            tokens,
            next_token,
            ", ".join(f"{key}: {jobs}" for key, jobs in f["busiest"]),
        )
    return table
