"""The clock a scheduler reads and sleeps on: the system's, or a manual one that tests drive.

A scheduler asks its ``Clock`` what time it is (epoch seconds) and sleeps on it until the
next tick. ``SystemClock`` is real time. ``ManualClock`` stands still until ``advance()``
moves it, which wakes every task sleeping until a moment it passed: a test runs minutes of
schedule in milliseconds, and knows exactly which ticks came.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = ("Clock", "ManualClock", "SystemClock", "as_clock")


@runtime_checkable
class Clock(Protocol):
    """Epoch seconds, and a way to sleep until one."""

    def now(self) -> float:
        """The time, in seconds since the epoch."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once ``now()`` reached ``deadline`` (at once if it has)."""
        ...


class SystemClock:
    """Real time: ``time.time()``, and asyncio's sleep."""

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()

    async def sleep_until(self, deadline: float) -> None:
        await asyncio.sleep(max(deadline - self._now(), 0.0))

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self.now() + seconds)


def as_clock(clock: Clock | Callable[[], float]) -> Clock:
    """``clock`` itself, or a clock that reads a callable giving epoch seconds (and sleeps in real time)."""
    return clock if isinstance(clock, Clock) else SystemClock(clock)


class ManualClock:
    """A clock for tests: it moves only when told to (``advance``), and wakes sleepers as it does.

    Between two ``advance`` calls the time stands still, so what a scheduler computes from it
    is exact. Tasks woken by ``advance`` run when the test next awaits: await
    ``wait_for_sleepers(n)`` to let them do their work (real I/O, in real time) until all
    ``n`` of them sleep on the clock again.
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._sleeping: list[tuple[float, int, asyncio.Future[None]]] = []  # a heap, soonest first
        self._order = itertools.count()
        self._watchers: list[asyncio.Future[None]] = []

    def now(self) -> float:
        return self._now

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (deadline, next(self._order), future)
        heapq.heappush(self._sleeping, entry)
        self._changed()
        try:
            await future
        finally:
            if entry in self._sleeping:  # cancelled while asleep
                self._sleeping.remove(entry)
                heapq.heapify(self._sleeping)

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self._now + seconds)

    def advance(self, seconds: float) -> None:
        """Move the time on by ``seconds`` and wake every task sleeping until then."""
        if seconds < 0:
            raise ValueError(f"a clock does not go back: advance({seconds})")
        self._now += seconds
        while self._sleeping and self._sleeping[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleeping)
            if not future.done():
                future.set_result(None)

    @property
    def sleepers(self) -> int:
        """How many tasks sleep on this clock now."""
        return sum(not future.done() for _, _, future in self._sleeping)

    @property
    def next_wake(self) -> float | None:
        """The earliest moment a task sleeps until, if any sleeps."""
        return min((deadline for deadline, _, future in self._sleeping if not future.done()), default=None)

    async def wait_for_sleepers(self, count: int = 1, timeout: float = 10.0) -> None:
        """Wait (in real time, up to ``timeout`` seconds) until at least ``count`` tasks sleep on the clock."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                while self.sleepers < count:
                    watcher = loop.create_future()
                    self._watchers.append(watcher)
                    try:
                        await watcher
                    finally:
                        if watcher in self._watchers:
                            self._watchers.remove(watcher)
        except TimeoutError:
            raise TimeoutError(f"{self.sleepers} tasks sleep on the clock after {timeout}s, not {count}") from None

    def _changed(self) -> None:
        watchers, self._watchers = self._watchers, []
        for watcher in watchers:
            if not watcher.done():
                watcher.set_result(None)
