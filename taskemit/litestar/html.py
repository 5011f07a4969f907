"""Server-side rendering of the dashboard: plain strings, every value through ``html.escape``.

Tables are described by :class:`Column` specs. The server renders a table's rows from the
same JSON the API serves (``msgspec.to_builtins`` of its struct), and writes the specs into
the page, so that the page's script (``assets.SCRIPT``) renders the refreshed rows the same
way. ``render_cell`` and the script's ``renderCell`` must stay in step.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from .assets import SCRIPT, STYLE

__all__ = ("Column", "Page", "attr", "field", "fields", "live", "table", "when")

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_NUMERIC = frozenset({"number", "rate"})


def attr(value: Any) -> str:
    """``value`` escaped for a double-quoted attribute."""
    return escape(str(value), quote=True)


def when(epoch: float | None) -> str:
    """UTC time to the millisecond, as the script shows it (``Date.toISOString``)."""
    if not epoch:
        return ""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(sep=" ", timespec="milliseconds")[:23]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _get(row: Any, path: str) -> Any:
    value = row
    for key in path.split(".") if path else ():
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _fill(pattern: str, row: Any) -> str:
    return _PLACEHOLDER.sub(lambda m: quote(str(_get(row, m[1]) or ""), safe=""), pattern)


def short_id(job_id: str) -> str:
    """A job id's token for the eye: its first 12 characters, or for an id that names its event
    (``<event hex>.<suffix>``, whose jobs share those) the event's first 8 and the suffix."""
    token = job_id.rsplit("}:", 1)[-1]
    if token[32:33] == ".":
        return token[:8] + "…" + token[32:41]
    return token[:12] + "…"


def _text(column: Column, value: Any) -> tuple[str, str]:
    """A code or link cell's text, and its tooltip attribute."""
    text = str(value if value is not None else "")
    if column.short and text:
        return short_id(text), f' title="{attr(text)}"'
    return text, ""


def _error(error: Any) -> str:
    return f"{error.get('type', '')}: {error.get('message', '')}" if error else ""


@dataclass(frozen=True, slots=True)
class Column:
    """A table column: its title, the row field it shows and how (``kind``, see ``render_cell``).

    ``href`` (links, actions) is a path with ``{field}`` placeholders filled from the row;
    ``when`` shows the cell only when the row's field has one of the values.
    """

    title: str
    field: str
    kind: str = "text"
    href: str = ""
    label: str = ""
    confirm: str = ""
    danger: bool = False
    when: tuple[str, tuple[str, ...]] | None = None
    #: show a job id as the first characters of its token (the full id in its tooltip)
    short: bool = False

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"field": self.field, "kind": self.kind}
        for name in ("href", "label", "confirm", "danger", "short"):
            if getattr(self, name):
                spec[name] = getattr(self, name)
        if self.when:
            spec["when"] = [self.when[0], list(self.when[1])]
        return spec


def render_cell(column: Column, row: Any, csrf_token: str) -> str:
    """One ``<td>``, as the script's ``renderCell`` builds it."""
    css = ' class="num"' if column.kind in _NUMERIC else ""
    if column.when and str(_get(row, column.when[0])) not in column.when[1]:
        return f"<td{css}></td>"
    value = _get(row, column.field)
    kind = column.kind
    if kind == "code":
        text, title = _text(column, value)
        inner = f"<code{title}>{escape(text)}</code>"
    elif kind == "rate":
        inner = f"{value or 0:.2f}"
    elif kind == "time":
        inner = when(value)
    elif kind == "duration":
        inner = _duration(value)
    elif kind == "age":
        inner = f"{time.time() - value:.1f} s ago" if value else ""
    elif kind == "status":
        inner = _status(value) if value else ""
    elif kind == "flag":
        inner = _status(column.label) if value else ""
    elif kind == "list":
        inner = escape(", ".join(value or []))
    elif kind == "error":
        inner = escape(_error(value))
    elif kind == "tries":
        inner = f"{row['attempts']}/{row['max_tries']}" if row.get("max_tries") else str(row.get("attempts") or "")
    elif kind == "link":
        text, title = (column.label, "") if column.label else _text(column, value)
        inner = f'<a href="{attr(_fill(column.href, row))}"{title}>{escape(text)}</a>'
    elif kind == "jobs":
        inner = "".join(
            f'<span class="status status-{attr(job["status"])}" title="{attr(job["listener"])}">'
            f"{escape(job['listener'].rsplit(':', 1)[-1])}={escape(job['status'])}</span>"
            for job in value or []
        )
    elif kind == "outcome":
        text = _error(row.get("error")) if row.get("error") else (row.get("result") or "")
        if row.get("next_attempt_at"):
            text += f" (next attempt {when(row['next_attempt_at'])})"
        if row.get("note"):
            text = row["note"] + (f"; {text}" if text else "")
        inner = escape(text)
    elif kind == "history":
        items = []
        for entry in value or []:
            if entry.get("replay_of"):
                what = f"replayed as {entry.get('new_job_id')}"
            else:
                number = entry.get("attempt") if entry.get("attempt") is not None else ""
                what = f"#{number} {entry.get('status')}" + (f" {_error(entry['error'])}" if entry.get("error") else "")
            items.append(f"<li>{escape(when(entry.get('started') or entry.get('at')) + ' ' + what)}</li>")
        inner = f'<ul class="history">{"".join(items)}</ul>'
    elif kind == "action":
        confirm = f' data-confirm="{attr(column.confirm)}"' if column.confirm else ""
        inner = _form(_fill(column.href, row), column.label, csrf_token, confirm=confirm, danger=column.danger)
    else:
        inner = escape(str(value if value is not None else ""))
    return f"<td{css}>{inner}</td>"


def _status(value: str) -> str:
    return f'<span class="status status-{attr(value)}">{escape(value)}</span>'


def _form(action: str, label: str, csrf_token: str, *, confirm: str = "", danger: bool = False) -> str:
    button = ' class="danger"' if danger else ""
    return (
        f'<form class="inline" method="post" action="{attr(action)}"{confirm}>'
        f'<input type="hidden" name="_csrf_token" value="{attr(csrf_token)}">'
        f"<button{button}>{escape(label)}</button></form>"
    )


def table(columns: Sequence[Column], data: Any, rows: str, csrf_token: str, *, empty: str = "nothing here") -> str:
    """A table of ``_get(data, rows)``, refreshed by the script from the JSON of its ``live`` box."""
    head = "".join(f"<th{' class=num' if c.kind in _NUMERIC else ''}>{escape(c.title)}</th>" for c in columns)
    found = _get(data, rows) or []
    body = "".join("<tr>" + "".join(render_cell(c, row, csrf_token) for c in columns) + "</tr>" for row in found)
    if not found:
        body = f'<tr><td class="empty" colspan="{len(columns)}">{escape(empty)}</td></tr>'
    specs = json.dumps([c.spec() for c in columns], separators=(",", ":"))
    return (
        f'<table data-rows="{attr(rows)}" data-columns="{attr(specs)}" data-empty="{attr(empty)}">'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def field(data: Any, path: str, kind: str = "text", *, label: str = "") -> str:
    """A live value: a ``<span>`` the script re-renders from the JSON of its ``live`` box."""
    cell = render_cell(Column("", path, kind, label=label), data, "")
    inner = cell[cell.index(">") + 1 : -len("</td>")]
    extra = f' data-label="{attr(label)}"' if label else ""
    return f'<span data-field="{attr(path)}" data-kind="{attr(kind)}"{extra}>{inner}</span>'


def fields(items: Iterable[tuple[str, str]]) -> str:
    """A definition list of (term, already-rendered HTML) pairs."""
    return "<dl>" + "".join(f"<dt>{escape(term)}</dt><dd>{value}</dd>" for term, value in items) + "</dl>"


def live(src: str, inner: str, interval: float) -> str:
    """A box whose tables and fields the script refreshes from ``src`` every ``interval`` seconds."""
    return (
        f'<div class="live" data-src="{attr(src)}" data-interval="{int(interval * 1000)}">'
        f'<span class="live-state"></span>{inner}</div>'
    )


def query(path: str, **params: Any) -> str:
    """``path`` with the non-empty ``params`` as its query string."""
    kept = {k: v for k, v in params.items() if v not in (None, "")}
    return f"{path}?{urlencode(kept)}" if kept else path


@dataclass(frozen=True, slots=True)
class Page:
    """What every page shares: where the dashboard is, the CSRF token, the refresh interval."""

    base: str
    csrf_token: str
    interval: float

    NAV = (
        ("overview", "Overview"),
        ("events", "Events"),
        ("dead", "Dead letters"),
        ("listeners", "Listeners"),
        ("workers", "Workers"),
        ("schedules", "Schedules"),
    )

    def form(self, action: str, label: str, *, confirm: str = "", danger: bool = False) -> str:
        return _form(
            action, label, self.csrf_token, confirm=f' data-confirm="{attr(confirm)}"' if confirm else "", danger=danger
        )

    def table(self, columns: Sequence[Column], data: Any, rows: str, *, empty: str = "nothing here") -> str:
        return table(columns, data, rows, self.csrf_token, empty=empty)

    def live(self, src: str, inner: str) -> str:
        return live(src, inner, self.interval)

    def render(self, title: str, body: str, *, here: str, notice: str | None = None) -> str:
        links = " ".join(
            f'<a href="{attr(self.base)}/{name}"{" class=here" if name == here else ""}>{escape(text)}</a>'
            for name, text in self.NAV
        )
        shown = f'<p class="notice" role="status">{escape(notice)}</p>' if notice else ""
        return (
            "<!doctype html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="csrf-token" content="{attr(self.csrf_token)}">'
            f"<title>{escape(title)} · taskemit</title><style>{STYLE}</style></head>"
            f"<body><header><strong>taskemit</strong>{links}</header>"
            f"<main><h1>{escape(title)}</h1>{shown}{body}</main>"
            f"<script>{SCRIPT}</script></body></html>"
        )
