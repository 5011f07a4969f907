"""The Redis side of the worker loop: claims, finishes, lease renewals, releases, in batches.

One :meth:`JobStore.exchange` is one round trip: it writes every outcome finished since the
last one (attempt records, event records, arq's results, retries, dead letters, counters
summed per listener) and claims up to N more due jobs of this worker's listeners, with a
lease each. The scripts are in ``store/lua`` (``claim``, ``finish``, ``renew``, ``release``,
``count``, ``dead_letter``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from arq.constants import in_progress_key_prefix, job_key_prefix, retry_key_prefix
from redis.exceptions import NoScriptError, ResponseError

from ..emit.listener import Listener
from ..monitor.deadletter import DEAD_LETTER, dead_letter_call
from ..monitor.stats import OutcomeTally
from ..settings import Settings
from ..state import JobState
from ..store import scripts as lua
from ..store.codec import META_KWARG, Codec
from ..store.wire import BatchConnection, send_batch
from .outcome import Outcome, dead_letter_details

__all__ = ("Claim", "ClaimBatch", "JobStore", "Route")

logger = logging.getLogger("taskemit.worker")

_CLAIM = lua.script("claim", "lib_batch")
_FINISH = lua.script("finish", "lib_batch")
_RENEW = lua.script("renew")
_RELEASE = lua.script("release")
_COUNT = lua.script("count")
_SCRIPTS = (_CLAIM, _FINISH, _RENEW, _RELEASE, _COUNT, DEAD_LETTER)


@dataclass(frozen=True, slots=True)
class Route:
    """Where one listener's jobs wait: its arq queue, its ready and leased sets there."""

    listener: str
    queue: str
    ready: str
    leased: str

    @classmethod
    def of(cls, item: Listener, settings: Settings, broadcast_to: str | None = None) -> Route:
        """``item``'s route; with ``broadcast_to``, the one on that worker's own broadcast queue."""
        space = settings.keys
        queue = space.queue(item.queue or settings.queue_name)
        if broadcast_to is not None:
            queue = space.broadcast_queue(queue, broadcast_to)
        return cls(item.name, queue, space.ready(queue, item.name), space.leased(queue, item.name))


@dataclass(frozen=True, slots=True)
class Claim:
    """A job this worker now holds the lease of."""

    job_id: str
    route: int  # index into JobStore.routes
    payload: bytes
    job_try: int


@dataclass(frozen=True, slots=True)
class ClaimBatch:
    claimed: list[Claim]
    #: (job id, route index) of jobs whose payload expired while they waited
    expired: list[tuple[str, int]]
    #: when work is next due (a delayed job, a retry, a lease running out), epoch seconds
    next_due: float | None
    #: due jobs whose abort was asked for before they started: settle them as aborted
    aborted: list[Claim]


class JobStore:
    """Claims and settles the jobs of ``routes`` for the worker ``holder``."""

    def __init__(self, redis: Any, settings: Settings, codec: Codec, routes: Sequence[Route], holder: str) -> None:
        self.redis = redis
        self.settings = settings
        self.codec = codec
        self.routes = list(routes)
        self.holder = holder
        self.lease_ms = int(settings.lease_ttl * 1000)
        self._claim_keys = [key for r in self.routes for key in (r.ready, r.leased, r.queue)]
        #: the claim loop's own connection (renewals and releases come from other tasks)
        self._batches = BatchConnection(redis)
        self._first = 0

    async def load_scripts(self) -> None:
        for script in _SCRIPTS:
            await script.load(self.redis)

    async def exchange(self, finished: Sequence[tuple[Outcome, int]], limit: int) -> ClaimBatch:
        """Write ``finished`` (outcome, route index) and claim up to ``limit`` jobs: one round trip."""
        calls: list[tuple[lua.LuaScript, list[str], list[Any]]] = []
        tally = OutcomeTally()
        finish_keys: list[str] = []
        finish_args: list[Any] = [self.holder, self.settings.event_retention]
        for outcome, route in finished:
            self._finish_call(outcome, self.routes[route], calls, finish_keys, finish_args)
            if outcome.state not in (JobState.FAILED, JobState.ABORTED):  # dead letters count their own
                tally.add(outcome.run.attempt.listener, outcome.counted, outcome.duration)
        if finish_keys:  # after the dead letters: they read what the finish leaves alone
            calls.append((_FINISH, finish_keys, finish_args))
        for keys, args in tally.calls(self.settings.keys):
            calls.append((_COUNT, keys, args))
        if self.routes:
            self._first = (self._first + 1) % len(self.routes)
            now_ms = int(time.time() * 1000)
            args = [
                now_ms,
                self.lease_ms,
                limit,
                self.holder,
                self._first,
                job_key_prefix,
                in_progress_key_prefix,
                retry_key_prefix,
                self.settings.keys.abort_requests,
                now_ms + self.lease_ms,
            ]
            calls.append((_CLAIM, self._claim_keys, args))
        replies = await self._run(calls, self._batches)
        if not self.routes:
            return ClaimBatch([], [], None, [])
        claimed, expired, next_due, aborted = replies[-1]
        due = float(next_due)
        return ClaimBatch(
            [Claim(job_id.decode(), route - 1, payload, job_try) for job_id, route, payload, job_try in claimed],
            [(job_id.decode(), route - 1) for job_id, route in expired],
            due / 1000 if due >= 0 else None,
            [Claim(job_id.decode(), route - 1, payload, 0) for job_id, route, payload in aborted],
        )

    async def renew(self, jobs: Sequence[tuple[str, int]]) -> tuple[list[str], list[str]]:
        """Renew the leases of ``jobs`` (job id, route index); returns the ids whose lease is lost,
        and those whose abort was asked for."""
        if not jobs:
            return [], []
        space = self.settings.keys
        keys: list[str] = []
        for job_id, route in jobs:
            keys += (space.in_progress(job_id), self.routes[route].leased)
        args = [
            self.holder,
            int(time.time() * 1000),
            self.lease_ms,
            space.abort_requests,
            *(job_id for job_id, _ in jobs),
        ]
        ((lost, aborted),) = await self._run([(_RENEW, keys, args)])
        return [job_id.decode() for job_id in lost], [job_id.decode() for job_id in aborted]

    async def release(self, jobs: Sequence[tuple[str, int]]) -> int:
        """Give back the leases of ``jobs`` without counting their attempts; returns how many."""
        if not jobs:
            return 0
        space = self.settings.keys
        keys: list[str] = []
        for job_id, route in jobs:
            r = self.routes[route]
            keys += (space.in_progress(job_id), r.leased, r.ready, r.queue)
        args = [self.holder, int(time.time() * 1000), *(job_id for job_id, _ in jobs)]
        (released,) = await self._run([(_RELEASE, keys, args)])
        return int(released)

    def _finish_call(
        self,
        outcome: Outcome,
        route: Route,
        calls: list[tuple[lua.LuaScript, list[str], list[Any]]],
        keys: list[str],
        args: list[Any],
    ) -> None:
        """Add ``outcome`` to the batch's finish call (and its dead letter call, if it died)."""
        settings = self.settings
        space = settings.keys
        run = outcome.run
        job_id = run.attempt.job_id
        keys += (
            space.attempts(job_id),
            space.event(run.meta.get("event") or "-"),
            route.queue,
            route.leased,
            route.ready,
            space.in_progress(job_id),
            space.job(job_id),
            space.retry(job_id),
            space.result(job_id),
        )
        if outcome.state is JobState.RETRYING:
            mode, extra = "retry", [outcome.next_payload, outcome.ttl_ms, outcome.run_at_ms]
        else:
            mode = "release" if outcome.state is JobState.FAILED else "done"
            extra = [*self._result(outcome, route), ""]  # finish.lua takes three arguments per mode
        if outcome.state is JobState.FAILED:
            dl_keys, dl_args = dead_letter_call(settings, **dead_letter_details(outcome, settings, route.queue))
            calls.append((DEAD_LETTER, dl_keys, dl_args))
        # a dead job's last attempt is in its history already: dead_letter.lua put it there
        attempt = "" if mode == "release" else outcome.attempt_json
        args += (job_id, mode, attempt, outcome.outcome_json, *extra)

    def _result(self, outcome: Outcome, route: Route) -> list[Any]:
        """arq's result of a finished job (what arq's ``Job.result()`` reads), and its TTL."""
        retention_ms = self.settings.result_retention * 1000
        if not retention_ms:
            return ["", 0]
        run = outcome.run
        success = outcome.state is JobState.COMPLETE
        data = {
            "t": run.attempt.number,
            "f": run.attempt.listener,
            "a": run.args,
            "k": {**run.kwargs, META_KWARG: run.meta},
            "et": run.enqueue_ms,
            "s": success,
            "r": outcome.result if success else outcome.error,
            "st": int(run.started * 1000),
            "ft": int(time.time() * 1000),
            "q": route.queue,
            "id": run.attempt.job_id,
        }
        try:
            return [self.codec.dumps(data), retention_ms]
        except Exception:  # a result the serializer cannot store: keep its repr
            data["r"] = repr(data["r"])[:1000]
            try:
                return [self.codec.dumps(data), retention_ms]
            except Exception:
                return ["", 0]

    async def close(self) -> None:
        await self._batches.close()

    async def _run(
        self, calls: Sequence[tuple[lua.LuaScript, list[str], list[Any]]], batches: BatchConnection | None = None
    ) -> list[Any]:
        """Run script calls in one pipeline; reload scripts Redis lost (a restart) and rerun only those."""
        replies: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for attempt in range(2):
            commands = [calls[i][0].command(calls[i][1], calls[i][2]) for i in todo]
            results = await (batches.send(commands) if batches is not None else send_batch(self.redis, commands))
            missing = []
            for i, result in zip(todo, results, strict=True):
                if isinstance(result, NoScriptError) and attempt == 0:
                    missing.append(i)
                elif isinstance(result, ResponseError):
                    script = calls[i][0]
                    logger.error("script %s failed in Redis: %s", script.name, result)
                    replies[i] = _empty_reply(script)
                elif isinstance(result, Exception):
                    raise result
                else:
                    replies[i] = result
            if not missing:
                break
            await self.load_scripts()
            todo = missing
        return replies


def _empty_reply(script: lua.LuaScript) -> Any:
    if script is _CLAIM:
        return [[], [], "-1", []]
    if script is _RENEW:
        return [[], []]
    return 0
