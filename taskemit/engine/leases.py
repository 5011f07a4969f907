"""Keeping the leases of a worker's running jobs, and stopping a job whose lease it cannot keep.

A claimed job's lease (arq's in-progress key, holding the claim's token) lives ``lease_ttl``
seconds; while the listener runs, the worker renews it three times per lease, so a live worker's
job is never claimed again, and a killed worker's job is within a lease.

The worker knows until when each lease surely holds: the moment it sent the claim or the last
renewal that Redis confirmed, plus the lease (Redis started the lease after that moment, so it
runs out later, never earlier). When that time comes near without a confirmed renewal (Redis
unreachable, a partition, replicas that do not confirm), the job is given up before another
worker can claim it: an async listener is cancelled; a sync listener, whose thread cannot be
stopped, runs to its end and its outcome is thrown away. Either way the job runs again
elsewhere, and the loss is logged and counted. A renewal that finds the lease gone or taken over
(fencing) gives the job up at once. Renewals also report jobs whose abort was asked for (their
tasks are cancelled); every third one, idle or not, takes the namespace's requests from arq's own
abort set (a worker also takes them before its first claim).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..store.connection import drop_connections, raise_if_cancelled
from ..store.faults import Fault, fault_of
from .batch import Claim, JobStore
from .link import REDIS_DOWN, RedisLink
from .outcome import Outcome

__all__ = ("LeaseKeeper", "RunningJob")

logger = logging.getLogger("taskemit.worker")

#: renewals between two looks at arq's abort set
_ARQ_ABORTS_EVERY = 3


@dataclass(slots=True)
class RunningJob:
    """A job the worker runs now."""

    task: asyncio.Task[Outcome]
    claim: Claim
    #: monotonic time until which its lease surely holds
    held_until: float
    #: a sync listener: its thread cannot be stopped
    sync: bool


class LeaseKeeper:
    """Renews the leases of ``running`` (job id -> RunningJob, the loop's own map) until cancelled.

    ``give_up(job_id, why)`` is called for a job whose lease is lost or about to be;
    ``abort(job_id)`` for a job whose abort was asked for.
    """

    def __init__(
        self,
        store: JobStore,
        running: Mapping[str, RunningJob],
        link: RedisLink,
        lease_ttl: float,
        give_up: Callable[[str, str], None],
        abort: Callable[[str], None],
    ) -> None:
        self.store = store
        self.running = running
        self.link = link
        self.lease_ttl = lease_ttl
        self.period = lease_ttl / 3
        #: a job is given up this long before its lease could run out
        self.margin = max(0.5, lease_ttl / 10)
        self.give_up = give_up
        self.abort = abort
        #: jobs given up (not renewed again)
        self.lost: set[str] = set()
        self._renewals = 0

    async def run(self) -> None:
        renewing: asyncio.Task[None] | None = None
        next_renewal = time.monotonic() + self.period
        try:
            while True:
                raise_if_cancelled()
                self.lost &= self.running.keys()  # forget the jobs that ended
                now = time.monotonic()
                if renewing is None and now >= next_renewal:
                    renewing = asyncio.create_task(self._renew(), name="taskemit-renew")
                    next_renewal = now + self.period
                self._enforce(now)
                wake_at = min([next_renewal, *(job.held_until - self.margin for job in self._held())])
                timeout = max(0.0, wake_at - time.monotonic())
                if renewing is None:
                    await asyncio.sleep(timeout)
                else:
                    done, _ = await asyncio.wait({renewing}, timeout=timeout)
                    if done:
                        renewing = None
        finally:
            if renewing is not None:
                renewing.cancel()

    def _held(self) -> list[RunningJob]:
        return [job for job_id, job in self.running.items() if job_id not in self.lost and not job.task.done()]

    def _enforce(self, now: float) -> None:
        for job in self._held():
            if job.held_until - self.margin <= now:
                self._lose(job.claim.job_id, f"its lease could not be renewed for {self.lease_ttl - self.margin:g}s")

    def _lose(self, job_id: str, why: str) -> None:
        if job_id not in self.lost and job_id in self.running:
            self.lost.add(job_id)
            self.give_up(job_id, why)

    async def _renew(self) -> None:
        held = self._held()
        self._renewals += 1
        sent = time.monotonic()
        try:
            async with asyncio.timeout(self.period):
                # idle too: a job waiting (deferred, or for its retry) is settled when it comes due
                if self._renewals % _ARQ_ABORTS_EVERY == 1:
                    await self.store.take_arq_aborts()
                if not held:
                    return
                lost, aborted, durable = await self.store.renew(
                    [(job.claim.job_id, job.claim.route, job.claim.token) for job in held]
                )
        except REDIS_DOWN as exc:
            self.link.down(exc)
            if fault_of(exc) is Fault.ROLE:  # a failover: the next connections go to the new primary
                await drop_connections(self.store.redis)
            return
        for job_id in aborted:
            self.abort(job_id)
        gone = set(lost)
        for job_id in lost:
            self._lose(job_id, "its lease ran out or another worker took the job over")
        if durable:
            for job in held:
                if job.claim.job_id not in gone:
                    job.held_until = max(job.held_until, sent + self.lease_ttl)
