"""Keeping the leases of a worker's running jobs.

A claimed job's lease (arq's in-progress key) lives ``lease_ttl`` seconds; while the listener
runs, the worker renews it three times per lease, so a live worker's job is never claimed
again, and a killed worker's job is within a lease. A renewal also reports jobs whose abort
was asked for (their tasks are cancelled; a sync listener's thread runs to its end) and
leases lost while Redis was away longer than a lease (logged: another worker may run the job
as well).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from .batch import JobStore
from .link import REDIS_DOWN, RedisLink

__all__ = ("keep_leases",)

logger = logging.getLogger("taskemit.worker")


async def keep_leases(
    store: JobStore,
    running: Mapping[str, tuple[asyncio.Task[None], int]],
    aborting: set[str],
    link: RedisLink,
    lease_ttl: float,
    worker_id: str,
) -> None:
    """Renew the leases of ``running`` (job id -> its task and route, the loop's own map) until
    cancelled; a job asked to stop joins ``aborting`` and has its task cancelled."""
    while True:
        await asyncio.sleep(lease_ttl / 3)
        held = [(job_id, route) for job_id, (task, route) in running.items() if not task.done()]
        if not held:
            continue
        try:
            lost, aborted = await store.renew(held)
        except REDIS_DOWN as exc:
            link.down(exc)
            continue
        for job_id in aborted:
            entry = running.get(job_id)
            if entry is not None:
                aborting.add(job_id)
                entry[0].cancel()
        for job_id in lost:
            logger.warning(
                "worker %s lost the lease of running job %s (Redis was unreachable for longer than the lease); "
                "another worker may run it as well",
                worker_id,
                job_id,
            )
