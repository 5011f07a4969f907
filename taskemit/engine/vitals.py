"""What a worker watches in itself: event-loop lag, jobs done and memory.

- Event-loop lag: a probe sleeps half a second and measures how late it wakes. An async
  listener that blocks (time.sleep, long computation, blocking I/O) shows as lag; past
  ``loop_lag_warning`` the worker logs a warning naming the async listeners that ran meanwhile.
  The longest lag since the last heartbeat goes into the heartbeat (and the metrics).
- Recycling: past ``max_jobs_per_child`` jobs or ``max_memory_mb`` of resident memory, the
  worker stops gracefully to be replaced (``taskemit worker`` then exits with
  ``pool.RECYCLE_EXIT_CODE``, and the ``-p`` supervisor starts a new process at once).
- Its supervisor: a worker the ``-p`` supervisor started stops gracefully when that
  supervisor is gone (killed with SIGKILL, say), instead of running on unsupervised.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence

from ..emit.listener import Listener
from ..settings import Settings

__all__ = ("SUPERVISOR_ENV", "Vitals", "resident_mib", "watch_supervisor")

logger = logging.getLogger("taskemit.worker")

#: seconds between the loop-lag probe's wake-ups
_LAG_PROBE = 0.5
#: seconds between two looks at the resident memory
_MEMORY_EVERY = 1.0
#: the environment variable in which the ``-p`` supervisor gives its workers its pid
SUPERVISOR_ENV = "TASKEMIT_SUPERVISOR_PID"
#: seconds between two looks at the supervisor
_SUPERVISOR_EVERY = 1.0


async def watch_supervisor(worker_id: str, stop: Callable[[], None]) -> None:
    """Call ``stop`` once this process's supervisor (``SUPERVISOR_ENV``) is no longer its parent."""
    try:
        supervisor = int(os.environ.get(SUPERVISOR_ENV, ""))
    except ValueError:
        return  # not started by a supervisor
    while os.getppid() == supervisor:
        await asyncio.sleep(_SUPERVISOR_EVERY)
    logger.warning("worker %s: its supervisor (pid %d) is gone; stopping", worker_id, supervisor)
    stop()


def resident_mib() -> float | None:
    """This process's resident memory in MiB (Linux ``/proc``), or None where unknown."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class Vitals:
    """One worker's lag probe and recycling limits."""

    def __init__(
        self, settings: Settings, worker_id: str, listeners: Sequence[Listener], running: Counter[str]
    ) -> None:
        self.settings = settings
        self.worker_id = worker_id
        self.running = running
        self.async_listeners = {item.name for item in listeners if item.is_async}
        #: the longest the event loop was blocked since the last heartbeat, seconds
        self.loop_lag = 0.0
        #: jobs finished, for max_jobs_per_child; True once the worker stopped to be replaced
        self.jobs_started = self.jobs_done = 0
        self.recycled = False
        self._started_since_probe: set[str] = set()
        self._next_memory_check = 0.0

    def job_started(self, listener: str) -> None:
        self._started_since_probe.add(listener)
        self.jobs_started += 1

    def claim_budget(self, wanted: int) -> int:
        """How many of ``wanted`` jobs may still be claimed under ``max_jobs_per_child``."""
        limit = self.settings.max_jobs_per_child
        return wanted if not limit else max(0, min(wanted, limit - self.jobs_started))

    def job_finished(self) -> bool:
        """Count a finished job; True when the worker should now stop to be replaced."""
        settings = self.settings
        self.jobs_done += 1
        reason = None
        if settings.max_jobs_per_child and self.jobs_done >= settings.max_jobs_per_child:
            reason = f"it ran {self.jobs_done} jobs (max_jobs_per_child={settings.max_jobs_per_child})"
        elif settings.max_memory_mb and time.monotonic() >= self._next_memory_check:
            self._next_memory_check = time.monotonic() + _MEMORY_EVERY
            rss = resident_mib()
            if rss is not None and rss > settings.max_memory_mb:
                reason = f"it uses {rss:.0f} MiB (max_memory_mb={settings.max_memory_mb})"
        if reason is None or self.recycled:
            return False
        logger.warning("worker %s stops to be replaced: %s", self.worker_id, reason)
        self.recycled = True
        return True

    def take_loop_lag(self) -> float:
        """The longest lag since the last call (for a heartbeat)."""
        lag, self.loop_lag = self.loop_lag, 0.0
        return lag

    async def watch_loop_lag(self) -> None:
        """Measure how late the event loop wakes up; warn when an async listener blocked it."""
        loop = asyncio.get_running_loop()
        threshold = self.settings.loop_lag_warning
        while True:
            start = loop.time()
            await asyncio.sleep(_LAG_PROBE)
            lag = loop.time() - start - _LAG_PROBE
            self.loop_lag = max(self.loop_lag, lag)
            started, self._started_since_probe = self._started_since_probe, set()
            if lag >= threshold:
                # the culprit may have returned by now: blame what ran at any time since the last probe
                ran = {name for name, n in self.running.items() if n} | started
                logger.warning(
                    "worker %s: the event loop was blocked for %.2fs; async listeners that ran meanwhile: %s. An async "
                    "listener that blocks (time.sleep, long computation, blocking I/O) stalls every job of the "
                    "worker; make it a plain def listener (it then runs in a thread) or await instead",
                    self.worker_id,
                    lag,
                    ", ".join(sorted(ran & self.async_listeners)) or "(none: the worker itself)",
                )
