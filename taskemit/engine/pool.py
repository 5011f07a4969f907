"""A supervisor for N worker processes: restarts a crashed one, forwards SIGTERM/SIGINT.

Each child is a separate OS process running one worker (``taskemit worker TARGET -p 1``),
started in its own session so that a terminal's Ctrl-C reaches the children only through
the supervisor, once.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType

from ..errors import InvalidArgument
from .vitals import SUPERVISOR_ENV

__all__ = ("RECYCLE_EXIT_CODE", "WorkerPool")

logger = logging.getLogger("taskemit.pool")

_POLL_INTERVAL = 0.1
_RESTART_FIRST_DELAY = 0.5
_RESTART_MAX_DELAY = 30.0
#: a child that lived this long before crashing restarts after the first delay again
_STABLE_AFTER = 30.0
#: the exit code of a worker that stopped to be replaced (max_jobs_per_child, max_memory_mb):
#: the supervisor starts a new one at once (EX_TEMPFAIL)
RECYCLE_EXIT_CODE = 75


@dataclass(slots=True)
class _Slot:
    index: int
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restart_delay: float = _RESTART_FIRST_DELAY
    restart_at: float | None = None
    finished: bool = False
    restarts: int = field(default=0)


class WorkerPool:
    """Run ``command`` in ``processes`` child processes until stopped (or, in burst mode, done)."""

    def __init__(
        self,
        command: Sequence[str],
        processes: int,
        *,
        burst: bool = False,
        stop_timeout: float = 30.0,
    ) -> None:
        if processes < 1:
            raise InvalidArgument(f"processes must be at least 1, got {processes}")
        self.command = list(command)
        self.burst = burst
        self.stop_timeout = stop_timeout
        self.slots = [_Slot(index) for index in range(processes)]
        self._stop_signal: int | None = None

    def _spawn(self, slot: _Slot) -> None:
        # each worker in a session of its own (a terminal's Ctrl-C reaches the supervisor only, which
        # forwards it), told its supervisor's pid so that it stops if the supervisor is killed
        env = {**os.environ, SUPERVISOR_ENV: str(os.getpid())}
        slot.process = subprocess.Popen(self.command, start_new_session=True, env=env)
        slot.started = time.monotonic()
        slot.restart_at = None
        logger.info("worker %d started (pid %d)", slot.index, slot.process.pid)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stop_signal is None:
            logger.info("received %s; stopping %d workers", signal.Signals(signum).name, len(self.slots))
        self._stop_signal = signum
        for slot in self.slots:
            if slot.process is not None and slot.process.poll() is None:
                slot.process.send_signal(signum)

    def _reap(self, slot: _Slot, now: float) -> None:
        assert slot.process is not None
        code = slot.process.returncode
        pid = slot.process.pid
        slot.process = None
        if self._stop_signal is not None or (self.burst and code == 0):
            slot.finished = True
            logger.info("worker %d (pid %d) exited with code %d", slot.index, pid, code)
            return
        if code == RECYCLE_EXIT_CODE:  # stopped to be replaced, not a crash
            logger.info("worker %d (pid %d) was recycled; starting a new one", slot.index, pid)
            slot.restart_delay = _RESTART_FIRST_DELAY
            slot.restarts += 1
            self._spawn(slot)
            return
        if now - slot.started > _STABLE_AFTER:
            slot.restart_delay = _RESTART_FIRST_DELAY
        slot.restart_at = now + slot.restart_delay
        slot.restarts += 1
        logger.warning(
            "worker %d (pid %d) exited with code %d; restarting in %.1fs", slot.index, pid, code, slot.restart_delay
        )
        slot.restart_delay = min(slot.restart_delay * 2, _RESTART_MAX_DELAY)

    def run(self) -> int:
        """Supervise until every child has finished; returns the exit code for the CLI."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for slot in self.slots:
                self._spawn(slot)
            stop_deadline: float | None = None
            while not all(slot.finished for slot in self.slots):
                now = time.monotonic()
                for slot in self.slots:
                    if slot.process is not None and slot.process.poll() is not None:
                        self._reap(slot, now)
                    elif slot.process is None and not slot.finished:
                        if self._stop_signal is not None:
                            slot.finished = True
                        elif slot.restart_at is not None and now >= slot.restart_at:
                            self._spawn(slot)
                if self._stop_signal is not None:
                    stop_deadline = stop_deadline or now + self.stop_timeout
                    if now > stop_deadline:
                        self._kill_all()
                time.sleep(_POLL_INTERVAL)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._kill_all()
        return 0

    def _kill_all(self) -> None:
        for slot in self.slots:
            if slot.process is not None and slot.process.poll() is None:
                logger.warning("worker %d (pid %d) did not stop in time; killing it", slot.index, slot.process.pid)
                slot.process.kill()
                slot.process.wait()
