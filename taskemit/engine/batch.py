"""The Redis side of the worker loop: claims, finishes, lease renewals, releases, in batches.

One :meth:`JobStore.exchange` is one round trip: it settles every attempt finished since the
last one (attempt records, event records, arq's results, retries, dead letters, counters: one
``finish.lua`` call, atomic) and claims up to N more due jobs of this worker's listeners, with a
lease each (``claim.lua``). On a Redis Cluster, where each queue has a hash tag of its own, that
is one finish and one claim per queue tag, sent to the tags' nodes at once in the round trip
(the claim's N shared between them, in turns). The scripts are in ``store/lua`` (``claim``, ``finish``, ``renew``,
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
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from redis.exceptions import ResponseError

from ..settings import Settings
from ..store import scripts as lua
from ..store.arq_format import IN_PROGRESS_KEY_PREFIX, JOB_KEY_PREFIX, RETRY_KEY_PREFIX
from ..store.codec import Codec
from ..store.connection import drop_connections
from ..store.durability import durability_holds, wait_command
from ..store.faults import Fault, RedisNotReady, fault_of
from ..store.keys import KeySpace
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


_T = TypeVar("_T")


def _shares(limit: int, parts: int, first: int) -> list[int]:
    """``limit`` split between ``parts`` claims as evenly as it goes, the remainder to the parts
    from ``first`` on (turns, so no part is always the one left short)."""
    base, extra = divmod(limit, parts)
    return [base + (1 if (k - first) % parts < extra else 0) for k in range(parts)]


class JobStore:
    """Claims and settles the jobs of ``routes`` for the worker ``holder``."""

    def __init__(self, redis: Any, settings: Settings, codec: Codec, routes: Sequence[Route], holder: str) -> None:
        self.redis = redis
        self.settings = settings
        self.codec = codec
        self.routes = list(routes)
        self.holder = holder
        self.lease_ms = int(settings.lease_ttl * 1000)
        space = settings.keys
        #: each route's key space: its queue's tag (one tag on one Redis)
        self._spaces = [space.space_of(r.queue) for r in self.routes]
        #: per tag: its space and the routes there (indexes into routes), with their claim keys and args
        self._groups: list[tuple[KeySpace, list[int], list[str], list[str]]] = []
        by_tag: dict[str, list[int]] = {}
        for index, own in enumerate(self._spaces):
            by_tag.setdefault(own.tag, []).append(index)
        for indexes in by_tag.values():
            self._groups.append(
                (
                    self._spaces[indexes[0]],
                    indexes,
                    [key for i in indexes for key in self.routes[i].claim_keys],
                    [arg for i in indexes for arg in self.routes[i].claim_args],
                )
            )
        self._turn = 0
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
        for space, items in self._by_space(finished, lambda item: item.route):
            calls.append((_FINISH, *finish_call(items, self.routes, self.settings, self.codec, space)))
        finishes = len(calls)
        claims: list[list[int]] = []  # the routes of each claim call
        if self.routes:
            self._first = (self._first + 1) % len(self.routes)
            self._turn = (self._turn + 1) % len(self._groups)
            now_ms = int(time.time() * 1000)
            shares = _shares(limit, len(self._groups), self._turn)
            for (space, indexes, claim_keys, claim_args), share in zip(self._groups, shares, strict=True):
                args = [
                    now_ms,
                    self.lease_ms,
                    share,
                    token,
                    self._first % len(indexes),
                    JOB_KEY_PREFIX,
                    IN_PROGRESS_KEY_PREFIX,
                    RETRY_KEY_PREFIX,
                    space.abort_requests,
                    now_ms + self.lease_ms,
                    *claim_args,
                ]
                calls.append((_CLAIM, [space.claim_receipt(token), *claim_keys], args))
                claims.append(indexes)
        extra = self._durability_commands()
        replies, waited = await self._run(calls, self._batches, extra)
        self._unanswered = None
        batch = ClaimBatch(durable=self._holds(waited))
        for applied_reply in replies[:finishes]:
            if applied_reply is not None:
                _, refused = applied_reply
                batch.refused.update({job_id.decode(): reason.decode() for job_id, reason in refused})
        due_at: list[float] = []
        for indexes, reply in zip(claims, replies[finishes:], strict=True):
            if reply is None:
                continue
            claimed, expired, next_due, aborted = reply
            due = float(next_due)
            batch.claimed += [
                Claim(job_id.decode(), indexes[route - 1], payload, job_try, token)
                for job_id, route, payload, job_try in claimed
            ]
            batch.expired += [Claim(job_id.decode(), indexes[route - 1], b"", 1, token) for job_id, route in expired]
            batch.aborted += [
                Claim(job_id.decode(), indexes[route - 1], payload, 0, token) for job_id, route, payload in aborted
            ]
            if due >= 0:
                due_at.append(due / 1000)
        batch.next_due = min(due_at) if due_at else None
        return batch

    def _by_space(self, items: Sequence[_T], route_of: Callable[[_T], int]) -> list[tuple[KeySpace, list[_T]]]:
        """``items`` grouped by the tag of their route's queue (one group on one Redis)."""
        if len(self._groups) == 1:
            return [(self._groups[0][0], list(items))] if items else []
        groups: dict[str, tuple[KeySpace, list[_T]]] = {}
        for item in items:
            space = self._spaces[route_of(item)]
            groups.setdefault(space.tag, (space, []))[1].append(item)
        return list(groups.values())

    def _durability_commands(self) -> list[tuple[Any, ...]]:
        """With a durability level: a write of this worker's own (so the wait covers everything
        before it, whichever connection wrote it) and the wait."""
        if self._wait is None:
            return []
        now = time.time()
        spaces = [space for space, *_ in self._groups] or [self.settings.keys]
        markers = [("SET", space.write_marker(self.holder), now, "PX", self.lease_ms) for space in spaces]
        return [*markers, self._wait]

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
        now_ms = int(time.time() * 1000)
        calls: list[tuple[lua.LuaScript, list[str], list[Any]]] = []
        for space, items in self._by_space(jobs, lambda job: job[1]):
            keys: list[str] = [space.abort_requests]
            args: list[Any] = [now_ms, self.lease_ms]
            for job_id, route, token in items:
                keys += (space.in_progress(job_id), self.routes[route].leased)
                args += (job_id, token)
            calls.append((_RENEW, keys, args))
        replies, waited = await self._run(calls, None, self._durability_commands())
        lost: list[str] = []
        aborted: list[str] = []
        answered = True
        for reply in replies:
            if reply is None:
                answered = False
                continue
            lost += [job_id.decode() for job_id in reply[0]]
            aborted += [job_id.decode() for job_id in reply[1]]
        return lost, aborted, answered and self._holds(waited)

    async def release(self, jobs: Sequence[tuple[str, int, str]]) -> int:
        """Give back the leases of ``jobs`` (job id, route index, token) without counting their
        attempts; returns how many."""
        if not jobs:
            return 0
        now_ms = int(time.time() * 1000)
        calls: list[tuple[lua.LuaScript, list[str], list[Any]]] = []
        for space, items in self._by_space(jobs, lambda job: job[1]):
            keys: list[str] = []
            args: list[Any] = [now_ms]
            for job_id, route, token in items:
                r = self.routes[route]
                keys += (space.in_progress(job_id), r.leased, r.ready, r.queue, r.flow_jobs)
                args += (job_id, token, r.wake, r.listener)
            calls.append((_RELEASE, keys, args))
        replies, _ = await self._run(calls)
        return sum(int(released or 0) for released in replies)

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
        by_tag: dict[str, dict[str, float]] = {}
        for job_id, score in ours.items():
            by_tag.setdefault(space.space_of(job_id).abort_requests, {})[job_id] = score
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, requests in by_tag.items():  # (each job's on its queue's tag)
                pipe.zadd(key, requests)
                # a request for a job that never ran again is forgotten after a day
                pipe.zremrangebyscore(key, "-inf", now_ms - 86_400_000)
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
