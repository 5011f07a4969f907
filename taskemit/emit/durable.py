"""An accepted event written down outside Redis: the encoding the spool and the outbox share.

An event that waits somewhere durable (a row of the spool's SQLite file, a row of the app's
outbox table) is its ``PendingEvent`` as JSON text: uuid, event id, job ids, emit time, the
encoded jobs (base64) and their routes, its cause. Reading it back gives an event that is
stored once by its uuid (``once``), however often it is read back and sent: a replay after a
crash between storing it and forgetting it stores nothing twice (for as long as Redis keeps
the event's record, ``event_retention``).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from ..settings import Settings
from .plan import Plan, Route
from .writer import PendingEvent

__all__ = ("DurableDecoder", "decode_pending", "encode_pending")

#: plans of read-back events kept by one decoder (events of one fan-out share theirs)
_PLANS_KEPT = 256


def encode_pending(pending: PendingEvent) -> str:
    """``pending`` as the JSON text of a durable row."""
    return json.dumps(
        {
            "event_uuid": pending.event_uuid,
            "event_id": pending.event_id,
            "jobs": pending.jobs,
            "emitted_ms": pending.emitted_ms,
            "payloads": [base64.b64encode(payload).decode("ascii") for payload in pending.payloads],
            "routes": [[r.queue, r.ready, r.wake, r.named, r.expires, r.flow] for r in pending.plan.routes],
            "flows": pending.flows,
            "cause": pending.cause,
            "durability": pending.durability,
        }
    )


def decode_pending(data: str | bytes, settings: Settings) -> PendingEvent:
    """The event a durable row holds, to be stored once by its uuid."""
    return DurableDecoder(settings).decode(data)


def _flow_of(route: list[Any]) -> str:
    return str(route[5]) if len(route) > 5 else ""


class DurableDecoder:
    """Reads durable rows back, sharing one ``Plan`` between the events of one fan-out (a relay
    reads thousands of rows a second: a plan per row would be most of its work)."""

    __slots__ = ("_plans", "settings")

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._plans: dict[tuple[Any, ...], Plan] = {}

    def decode(self, data: str | bytes) -> PendingEvent:
        fields: dict[str, Any] = json.loads(data)
        event_id = fields["event_id"]
        jobs: dict[str, str] = fields["jobs"]
        # a route written by an earlier version has four fields (no expiry: not a broadcast queue), or
        # five (no flow control)
        routes = tuple(
            Route(
                str(r[0]), str(r[1]), str(r[2]), bool(r[3]), len(r) > 4 and bool(r[4]), str(r[5]) if len(r) > 5 else ""
            )
            for r in fields["routes"]
        )
        flows = fields.get("flows")
        key = (event_id, tuple(jobs), routes)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= _PLANS_KEPT:
                self._plans.clear()
            plan = self._plans[key] = Plan(event_id, list(jobs), routes)
        return PendingEvent(
            fields["event_uuid"],
            event_id,
            jobs,
            self.settings,
            int(fields["emitted_ms"]),
            [base64.b64decode(payload) for payload in fields["payloads"]],
            plan,
            cause=fields.get("cause"),
            durability=fields.get("durability", "memory"),
            resent=True,  # it may have been stored before: Redis stores it once by its uuid
            flows=[str(flow) for flow in flows] if flows is not None else None,
        )
