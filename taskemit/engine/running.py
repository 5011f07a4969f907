"""The jobs a worker has in flight, and what became of each: finished (an outcome to write),
interrupted (a lease to give back), given up (a lease lost: nothing to write), or left behind (a
sync listener's thread still running when the worker was stopped at once).

:class:`InFlight` starts each claimed job as a task and does its bookkeeping in the task's done
callback, which runs however the task ended, even when it was cancelled before it started.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter
from collections.abc import Callable, Sequence

from ..state import JobState
from .batch import Claim, Finished, Route
from .jobrun import ListenerRunner
from .leases import RunningJob
from .outcome import Outcome

__all__ = ("InFlight",)

logger = logging.getLogger("taskemit.worker")


class InFlight:
    """A worker's running jobs (``running``), and what the loop still has to write for them."""

    def __init__(
        self,
        worker_id: str,
        routes: Sequence[Route],
        runners: Sequence[ListenerRunner],
        running_listeners: Counter[str],
        lease_ttl: float,
        on_done: Callable[[Outcome | None], None],
    ) -> None:
        self.worker_id = worker_id
        self.routes = routes
        self.runners = runners
        self.running_listeners = running_listeners
        self.lease_ttl = lease_ttl
        #: called as each job ends, with its outcome (None when it has none to write)
        self.on_done = on_done
        #: job id -> the job running now
        self.running: dict[str, RunningJob] = {}
        #: outcomes to write
        self.finished: list[Finished] = []
        #: jobs stopped before their end whose leases are to be given back (job id, route, token)
        self.interrupted: list[tuple[str, int, str]] = []
        #: running jobs being cancelled because their abort was asked for
        self._aborting: set[str] = set()
        #: jobs given up while running (their lease is lost): their outcome is thrown away
        self._lost: set[str] = set()
        self.complete = self.failed = self.retried = 0
        #: leases given up; sync listeners left running in their threads by a stop at once
        self.leases_lost = self.abandoned = 0

    def __len__(self) -> int:
        return len(self.running)

    def start(self, claim: Claim, sent: float) -> None:
        """Run ``claim``'s job; its lease surely holds until ``sent`` (when its claim was sent) + a lease."""
        runner = self.runners[claim.route]
        task = asyncio.create_task(
            runner.run_payload(claim.job_id, claim.job_try, claim.payload, self.worker_id, self.running_listeners)
        )
        self.running[claim.job_id] = RunningJob(task, claim, sent + self.lease_ttl, not runner.item.is_async)
        task.add_done_callback(functools.partial(self._done, claim))

    def expired(self, claim: Claim) -> None:
        """A claimed job whose payload expired while it waited: it is dead-lettered."""
        outcome = self.runners[claim.route].expired(claim.job_id, self.worker_id)
        self.finished.append(Finished(outcome, claim.route, claim.token))

    def aborted(self, claim: Claim, started: bool) -> None:
        """A job stopped on request (``taskemit abort``, arq's ``Job.abort()``): settled as aborted."""
        outcome = self.runners[claim.route].aborted(claim.job_id, claim.job_try, claim.payload, self.worker_id, started)
        self.finished.append(Finished(outcome, claim.route, claim.token))

    def give_up(self, job_id: str, why: str) -> None:
        """Stop a running job whose lease is lost (``leases``): an async listener is cancelled, a
        sync one runs to its end; its outcome is not recorded."""
        job = self.running.get(job_id)
        if job is None or job_id in self._lost:
            return
        self._lost.add(job_id)
        self.leases_lost += 1
        logger.warning(
            "worker %s gives up job %s of %s: %s; %s",
            self.worker_id,
            job_id,
            self.routes[job.claim.route].listener,
            why,
            "its thread runs to its end, and its outcome is thrown away" if job.sync else "it is cancelled",
        )
        if not job.sync:
            job.task.cancel()

    def abort(self, job_id: str) -> None:
        """Cancel a running job whose abort was asked for; it is settled as aborted."""
        job = self.running.get(job_id)
        if job is not None:
            self._aborting.add(job_id)
            job.task.cancel()

    def stoppable(self) -> list[asyncio.Task[Outcome]]:
        """The running jobs a cancel stops (async listeners: a thread cannot be stopped)."""
        return [job.task for job in self.running.values() if not job.sync and not job.task.done()]

    def cancel_all(self) -> list[asyncio.Task[Outcome]]:
        """Cancel every running job (async ones are given back, sync ones left behind)."""
        tasks = [job.task for job in self.running.values()]
        for task in tasks:
            task.cancel()
        return tasks

    def _done(self, claim: Claim, task: asyncio.Task[Outcome]) -> None:
        job = self.running.pop(claim.job_id)
        aborting = claim.job_id in self._aborting
        self._aborting.discard(claim.job_id)
        outcome: Outcome | None = None
        try:
            if claim.job_id in self._lost:  # given up: another worker runs it, or will
                self._lost.discard(claim.job_id)
                logger.warning(
                    "worker %s: job %s of %s ended after its lease was lost; its outcome is not recorded",
                    self.worker_id,
                    claim.job_id,
                    self.routes[claim.route].listener,
                )
            elif task.cancelled():
                if aborting:  # stopped on request: settled as aborted
                    self.aborted(claim, started=True)
                elif job.sync:  # its thread runs on: the lease is left to run out
                    self.abandoned += 1
                else:
                    self.interrupted.append((claim.job_id, claim.route, claim.token))
            elif (error := task.exception()) is not None:  # a bug in taskemit, never the listener's
                logger.error(
                    "job %s of %s could not be run",
                    claim.job_id,
                    self.routes[claim.route].listener,
                    exc_info=(type(error), error, error.__traceback__),
                )
                self.interrupted.append((claim.job_id, claim.route, claim.token))
            else:
                outcome = task.result()
                self.finished.append(Finished(outcome, claim.route, claim.token))
                if outcome.state is JobState.COMPLETE:
                    self.complete += 1
                elif outcome.state is JobState.RETRYING:
                    self.retried += 1
                else:
                    self.failed += 1
        finally:
            self.on_done(outcome)
