"""``Plan``: the jobs an event of given listeners makes, and how its events go to Redis.

A plan names an event's jobs, the listener each runs and each job's ``Route`` (its queue, its
listener's ready set there, the queue's wake channel). Every event of one event id and one set
of listeners has the same plan: ``Fanout`` makes it once. The plan also holds, encoded once,
the part of ``emit.lua``'s arguments that is the same for all of its events (the event id, the
number of jobs, the record's ``queues`` field, the routes, and their flow control unless the
event has its own), so that storing an event encodes only what is its own: its uuid, time, job
ids, payloads, its cause, and its jobs' flow control when it has any (ordering and rate keys,
emit options: ``jobflow``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..store.codec import json_text
from ..store.keys import KeySpace
from ..store.wire import bulk

__all__ = ("Plan", "Route", "queues_json")

#: one argument whose length and bytes are filled in (``bytes % ...``)
_ARGUMENT = b"$%d\r\n%s\r\n"


@dataclass(frozen=True, slots=True)
class Route:
    """Where one listener's jobs go: its queue, its ready set there, the queue's wake channel."""

    queue: str
    ready: str
    wake: str
    named: bool  # on a queue the listener names, not the default one
    #: a broadcast job's own queue: it expires when no emit renews it (its worker is gone)
    expires: bool = False
    #: emit.lua's flow argument of the listener's jobs when the event has none of its own: ''
    #: (none), or the record of the listener's priority
    flow: str = ""


def queues_json(names: Sequence[str], routes: Sequence[Route]) -> str:
    """The event record's ``queues`` field: {job name: queue key} when a job is not on the
    default queue, else '' (the same for every event of one plan)."""
    if not any(route.named for route in routes):
        return ""
    return json_text({name: route.queue for name, route in zip(names, routes, strict=True)})


def _literal(data: bytes) -> bytes:
    """``data`` inside a ``bytes % ...`` template."""
    return data.replace(b"%", b"%%")


class Plan:
    """The jobs of an event of ``event_id``: one per name in ``names``, running ``functions``
    (the listeners' names; a broadcast job's name adds ``@worker``), going to ``routes``."""

    __slots__ = (
        "_flow_template",
        "_jobs",
        "_template",
        "argc",
        "event_id",
        "expiring",
        "functions",
        "keyed",
        "names",
        "prefixes",
        "queues",
        "routes",
        "wakes",
    )

    def __init__(
        self,
        event_id: str,
        names: Sequence[str],
        routes: Sequence[Route],
        functions: Sequence[str] | None = None,
        keyed: bool = False,
        space: KeySpace | None = None,
    ) -> None:
        self.event_id = event_id
        #: its jobs' flow control depends on each event's arguments (an ordering or a rate key)
        self.keyed = keyed
        self.names = list(names)
        self.routes = list(routes)
        self.functions = list(functions) if functions is not None else [name.partition("@")[0] for name in names]
        #: the event record's ``queues`` field
        self.queues = queues_json(self.names, self.routes)
        #: on a Redis Cluster (``space`` sharded): what each job's id starts with, its queue's tag
        #: (its keys are there); else None (every id starts with the namespace's)
        sharded = space is not None and space.sharded
        self.prefixes = [space.space_of(r.queue).prefix for r in self.routes] if space and sharded else None
        #: (wake channel, listener) per job: the workers to wake once these jobs are stored
        self.wakes = tuple(dict.fromkeys(zip((r.wake for r in self.routes), self.functions, strict=True)))
        #: broadcast queues and ready sets, whose expiry each emit renews
        self.expiring = tuple(dict.fromkeys(key for r in self.routes if r.expires for key in (r.queue, r.ready)))
        #: ``emit.lua`` arguments per event
        self.argc = 7 + 5 * len(self.names)
        # the record's jobs field, {name: job id}, with the ids to fill in (ids are JSON-safe:
        # a namespace's characters and hex digits)
        pairs = [_literal(json_text(name).encode()) + b':"%s"' for name in self.names]
        self._jobs = b"{" + b",".join(pairs) + b"}"
        fixed = _literal(bulk(event_id) + bulk(len(self.names)) + bulk(self.queues))
        routes_resp = [_literal(bulk(r.queue) + bulk(r.ready)) for r in self.routes]
        # uuid, emitted at, jobs, cause; per job: its route, id, payload, flow control
        head = fixed + _ARGUMENT * 4
        self._template = head + b"".join(
            r + _ARGUMENT * 2 + _literal(bulk(route.flow)) for r, route in zip(routes_resp, self.routes, strict=True)
        )
        #: the same with each job's flow control filled in (an event with its own)
        self._flow_template = head + b"".join(r + _ARGUMENT * 3 for r in routes_resp)

    def resp(
        self,
        event_uuid: str,
        emitted_ms: int,
        job_ids: Sequence[str],
        payloads: Sequence[bytes],
        cause: str | None,
        flows: Sequence[str] | None = None,
    ) -> bytes:
        """One event's ``emit.lua`` arguments (``argc`` of them), encoded in RESP; ``flows``: its
        jobs' flow control arguments, when the event has its own (else the routes')."""
        uuid = event_uuid.encode()
        emitted = b"%d" % emitted_ms
        cause_data = cause.encode() if cause else b""
        if flows is not None:
            values: list[bytes | int] = [
                len(uuid), uuid, len(emitted), emitted, 0, b"", len(cause_data), cause_data,
            ]  # fmt: skip
            ids = [job_id.encode() for job_id in job_ids]
            values[4:6] = self._jobs_value(ids)
            for job_id, payload, flow in zip(ids, payloads, flows, strict=True):
                flow_data = flow.encode()
                values += (len(job_id), job_id, len(payload), payload, len(flow_data), flow_data)
            return self._flow_template % tuple(values)
        if len(job_ids) == 1:  # most events: one format, no loop
            job_id = job_ids[0].encode()
            jobs = self._jobs % job_id
            payload = payloads[0]
            return self._template % (
                len(uuid), uuid, len(emitted), emitted, len(jobs), jobs, len(cause_data), cause_data,
                len(job_id), job_id, len(payload), payload,
            )  # fmt: skip
        ids = [job_id.encode() for job_id in job_ids]
        jobs = self._jobs % tuple(ids)
        values = [
            len(uuid), uuid, len(emitted), emitted, len(jobs), jobs, len(cause_data), cause_data,
        ]  # fmt: skip
        for job_id, payload in zip(ids, payloads, strict=True):
            values += (len(job_id), job_id, len(payload), payload)
        return self._template % tuple(values)

    def _jobs_value(self, ids: list[bytes]) -> tuple[int, bytes]:
        jobs = self._jobs % (ids[0] if len(ids) == 1 else tuple(ids))
        return len(jobs), jobs
