"""The Redis side of the worker loop: claims, finishes, lease renewals, releases, in batches.

One :meth:`JobStore.exchange` is one round trip: it settles every attempt finished since the
last one (attempt records, event records, arq's results, retries, dead letters, counters: one
``finish.lua`` call, atomic) and claims up to N more due jobs of this worker's listeners, with a
lease each (``claim.lua``). The scripts are in ``store/lua`` (``claim``, ``finish``, ``renew``,
``release``).

Every claim has a token, the value of its jobs' leases; finishes, renewals and releases carry
it, and the scripts refuse a holder whose job was taken over (fencing). A round trip whose reply
was lost is sent again as it was: the finishes are applied once (the second time they are
refused: their leases are gone), and the claim, sent with the same token, hands out the same
jobs again. With a durability level, a round trip ends with a wait for replicas (or the fsync);
until it holds, claimed jobs are not started and finished ones are sent again.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Sequence
from typing import Any

from redis.exceptions import ResponseError

from ..settings import Settings
from ..store import scripts as lua
from ..store.arq_format import IN_PROGRESS_KEY_PREFIX, JOB_KEY_PREFIX, RETRY_KEY_PREFIX
from ..store.codec import Codec
from ..store.connection import drop_connections
from ..store.durability import durability_holds, wait_command
from ..store.faults import Fault, RedisNotReady, fault_of
from ..store.wire import BatchConnection, send_batch
from .claims import Claim, ClaimBatch, Finished, Route
from .settle import finish_call

__all__ = ("Claim", "ClaimBatch", "Finished", "JobStore", "Route")

logger = logging.getLogger("taskemit.worker")

_CLAIM = lua.script("claim", "lib_batch", "lib_flow")
_FINISH = lua.script("finish", "lib_batch", "lib_stats", "lib_dead", "lib_flow")
_RENEW = lua.script("renew")
_RELEASE = lua.script("release", "lib_flow")
_SCRIPTS = (_CLAIM, _FINISH, _RENEW, _RELEASE)


class JobStore:
    """Claims and settles the jobs of ``routes`` for the worker ``holder``."""

    def __init__(self, redis: Any, settings: Settings, codec: Codec, routes: Sequence[Route], holder: str) -> None:
        self.redis = redis
        self.settings = settings
        self.codec = codec
        self.routes = list(routes)
        self.holder = holder
        self.lease_ms = int(settings.lease_ttl * 1000)
        self._claim_keys = [key for r in self.routes for key in r.claim_keys]
        self._claim_args = [arg for r in self.routes for arg in r.claim_args]
        #: the claim loop's own connection (renewals and releases come from other tasks)
        self._batches = BatchConnection(redis)
        self._first = 0
        self._tokens = itertools.count(1)
        #: the token of a round trip whose reply was lost: the next one is sent with it again
        self._unanswered: str | None = None
        self._wait = wait_command(settings.durability, settings.min_replicas, settings.durability_timeout)
        #: the newest request of arq's abort set already copied (ms)
        self._arq_aborts_seen = time.time() * 1000 - 60_000

    async def load_scripts(self) -> None:
        for script in _SCRIPTS:
            await script.load(self.redis)

    async def reconnect(self) -> None:
        """Drop every connection: the node answered as a replica (a failover)."""
        await self._batches.close(broken=True)
        await drop_connections(self.redis)

    def _token(self) -> str:
        if self._unanswered is None:
            self._unanswered = f"{self.holder}#{next(self._tokens)}"
        return self._unanswered

    async def exchange(self, finished: Sequence[Finished], limit: int) -> ClaimBatch:
        """Settle ``finished`` and claim up to ``limit`` jobs: one round trip.

        Raises what ``send_batch`` raises for a lost connection, and RedisNotReady for a reply
        that says "not now" (out of memory, loading, no longer the primary...): then any part
        of it may have been applied, and the caller sends the same finishes again (the claim
        goes with the same token until a round trip is answered).
        """
        token = self._token()
        calls: list[tuple[lua.LuaScript, list[str], list[Any]]] = []
        if finished:
            calls.append((_FINISH, *finish_call(finished, self.routes, self.settings, self.codec)))
        if self.routes:
            self._first = (self._first + 1) % len(self.routes)
            now_ms = int(time.time() * 1000)
            args = [
                now_ms,
                self.lease_ms,
                limit,
                token,
                self._first,
                JOB_KEY_PREFIX,
                IN_PROGRESS_KEY_PREFIX,
                RETRY_KEY_PREFIX,
                self.settings.keys.abort_requests,
                now_ms + self.lease_ms,
                *self._claim_args,
            ]
            calls.append((_CLAIM, [self.settings.keys.claim_receipt(token), *self._claim_keys], args))
        extra = self._durability_commands()
        replies, waited = await self._run(calls, self._batches, extra)
        self._unanswered = None
        batch = ClaimBatch(durable=self._holds(waited))
        if finished:
            applied_reply = replies[0]
            if applied_reply is not None:
                _, refused = applied_reply
                batch.refused = {job_id.decode(): reason.decode() for job_id, reason in refused}
        if self.routes and replies[-1] is not None:
            claimed, expired, next_due, aborted = replies[-1]
            due = float(next_due)
            batch.claimed = [
                Claim(job_id.decode(), route - 1, payload, job_try, token)
                for job_id, route, payload, job_try in claimed
            ]
            batch.expired = [Claim(job_id.decode(), route - 1, b"", 1, token) for job_id, route in expired]
            batch.next_due = due / 1000 if due >= 0 else None
            batch.aborted = [Claim(job_id.decode(), route - 1, payload, 0, token) for job_id, route, payload in aborted]
        return batch

    def _durability_commands(self) -> list[tuple[Any, ...]]:
        """With a durability level: a write of this worker's own (so the wait covers everything
        before it, whichever connection wrote it) and the wait."""
        if self._wait is None:
            return []
        marker = ("SET", self.settings.keys.write_marker(self.holder), time.time(), "PX", self.lease_ms)
        return [marker, self._wait]

    def _holds(self, waited: Any) -> bool:
        if self._wait is None:
            return True
        if isinstance(waited, BaseException):
            logger.error("waiting for durability %r failed: %s", self.settings.durability, waited)
            return False
        return durability_holds(self.settings.durability, self.settings.min_replicas, waited)

    async def renew(self, jobs: Sequence[tuple[str, int, str]]) -> tuple[list[str], list[str], bool]:
        """Renew the leases of ``jobs`` (job id, route index, token); returns the ids whose lease
        is lost, those whose abort was asked for, and whether the durability level held."""
        if not jobs:
            return [], [], True
        space = self.settings.keys
        keys: list[str] = [space.abort_requests]
        args: list[Any] = [int(time.time() * 1000), self.lease_ms]
        for job_id, route, token in jobs:
            keys += (space.in_progress(job_id), self.routes[route].leased)
            args += (job_id, token)
        (reply,), waited = await self._run([(_RENEW, keys, args)], None, self._durability_commands())
        if reply is None:
            return [], [], False
        lost, aborted = reply
        return [job_id.decode() for job_id in lost], [job_id.decode() for job_id in aborted], self._holds(waited)

    async def release(self, jobs: Sequence[tuple[str, int, str]]) -> int:
        """Give back the leases of ``jobs`` (job id, route index, token) without counting their
        attempts; returns how many."""
        if not jobs:
            return 0
        space = self.settings.keys
        keys: list[str] = []
        args: list[Any] = [int(time.time() * 1000)]
        for job_id, route, token in jobs:
            r = self.routes[route]
            keys += (space.in_progress(job_id), r.leased, r.ready, r.queue, r.flow_jobs)
            args += (job_id, token, r.wake, r.listener)
        (released,), _ = await self._run([(_RELEASE, keys, args)])
        return int(released or 0)

    async def take_arq_aborts(self) -> int:
        """Copy the new abort requests of this namespace's jobs from arq's own set (``Job.abort()``,
        read by stock arq workers too) to the namespace's, which the scripts read; how many.
        arq forgets a request after a minute; so are this namespace's requests there."""
        space = self.settings.keys
        requests = await self.redis.zrangebyscore(
            space.arq_abort_requests, f"({self._arq_aborts_seen}", "+inf", withscores=True
        )
        ours = {job_id: score for job_id, score in requests if space.owns(job_id)}
        if requests:
            self._arq_aborts_seen = max(score for _, score in requests)
        if not ours:
            return 0
        now_ms = time.time() * 1000
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(space.abort_requests, ours)
            # a request for a job that never ran again is forgotten after a day
            pipe.zremrangebyscore(space.abort_requests, "-inf", now_ms - 86_400_000)
            await pipe.execute()
        return len(ours)

    async def close(self) -> None:
        await self._batches.close()

    async def _run(
        self,
        calls: Sequence[tuple[lua.LuaScript, list[str], list[Any]]],
        batches: BatchConnection | None = None,
        extra: Sequence[tuple[Any, ...]] = (),
    ) -> tuple[list[Any], Any]:
        """Run script calls, then ``extra`` commands, in one pipeline; reload scripts Redis lost
        (a restart) and rerun only those. Returns the scripts' replies (None for one whose reply
        proves it bad: logged) and the last extra command's reply.

        Raises RedisNotReady for a reply that says "not now" (the caller backs off and sends
        again: the scripts are safe to send again).
        """
        replies: list[Any] = [None] * len(calls)
        waited: Any = None
        todo = list(range(len(calls)))
        for attempt in range(2):
            commands: list[Any] = [calls[i][0].command(calls[i][1], calls[i][2]) for i in todo]
            commands += extra
            results = await (batches.send(commands) if batches is not None else send_batch(self.redis, commands))
            if extra:
                waited = results[-1]
            missing = []
            not_ready: RedisNotReady | None = None
            for i, result in zip(todo, results, strict=False):
                if not isinstance(result, BaseException):
                    replies[i] = result
                    continue
                fault = fault_of(result)
                if fault is Fault.NOSCRIPT and attempt == 0:
                    missing.append(i)
                elif fault is Fault.BAD and isinstance(result, ResponseError):
                    logger.error("script %s failed in Redis: %s", calls[i][0].name, result)
                elif fault is Fault.BAD:
                    raise result
                else:
                    not_ready = not_ready or RedisNotReady(result, fault)
            if not_ready is not None:
                raise not_ready
            if not missing:
                break
            await self.load_scripts()
            todo = missing
        return replies, waited
