"""What a system adapter provides: worker command lines, a producer, versions.

A scenario never touches a system's API directly; it calls these methods. Payloads are the
same everywhere: keyword arguments ``n`` (an int) and ``t`` (the producer's time.time(), or
0.0 when latency is not measured). ``fanout`` is how many jobs one "event" makes: taskemit
emits one event with ``fanout`` listeners, the job queues enqueue ``fanout`` jobs.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parents[3]  # the repository: workers run with it as cwd
PYTHON = sys.executable
TASKS = ("a", "b", "c")  # the three no-op tasks a fan-out of 3 spreads over; "d" is the single one


def package_versions(*names: str) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


class Producer(ABC):
    """Stores jobs from the benchmark process."""

    @abstractmethod
    async def send(self, fanout: int, n: int, t: float) -> None:
        """Store one event of ``fanout`` jobs the way an application would (awaited one by one)."""

    async def send_many(self, fanout: int, count: int) -> None:
        """Store ``count`` events quickly (setup only, not timed): batches of 100 at a time."""
        for first in range(0, count, 100):
            await asyncio.gather(*(self.send(fanout, n, 0.0) for n in range(first, min(first + 100, count))))

    async def send_last(self, fanout: int, n: int, t: float) -> None:
        """Like send, for the last event of a loop: returns once it and all before it are stored."""
        await self.send(fanout, n, t)


class System(ABC):
    """One job system under test."""

    name: str = ""
    #: how it is configured, shown in the JSON (and what makes the comparison fair or not)
    settings: ClassVar[dict[str, Any]] = {}

    @abstractmethod
    def worker_commands(self, processes: int) -> list[list[str]]:
        """Command lines of the worker processes (one process group each), run with cwd=ROOT."""

    def worker_env(self) -> dict[str, str]:
        """Extra environment of the worker processes (besides BENCH_REDIS_URL and BENCH_QUEUE)."""
        return {}

    @abstractmethod
    def versions(self) -> dict[str, str]: ...

    def prepare(self) -> None:  # noqa: B027  (most systems need nothing)
        """Make sure the system can run (install what it needs); raise if it cannot."""

    @abstractmethod
    def producer(self, url: str, queue: str) -> Any:
        """``async with system.producer(url, queue) as producer``: a :class:`Producer`."""

    # -- what scenarios call; the defaults use the producer in this process ----------------

    async def fill(self, url: str, queue: str, jobs: int, fanout: int) -> None:
        """Store ``jobs`` jobs (``jobs // fanout`` events) before any worker runs; all stored on return."""
        async with self.producer(url, queue) as producer:
            await producer.send_many(fanout, jobs // fanout)

    async def paced(self, url: str, queue: str, rate: float, seconds: float) -> int:
        """Emit one-job events stamped with time.time() at ``rate`` per second; return how many."""
        total = int(rate * seconds)
        async with self.producer(url, queue) as producer:
            start = time.perf_counter()
            for n in range(total):
                delay = start + n / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                send = producer.send_last if n == total - 1 else producer.send
                await send(1, n, time.time())
        return total

    async def emit_loop(self, url: str, queue: str, jobs: int, fanout: int) -> float:
        """Seconds to store ``jobs`` jobs, one awaited call after the other (the timed loop)."""
        async with self.producer(url, queue) as producer:
            start = time.perf_counter()
            events = jobs // fanout
            for n in range(events - 1):
                await producer.send(fanout, n, 0.0)
            await producer.send_last(fanout, events - 1, 0.0)
            return time.perf_counter() - start


@asynccontextmanager
async def closing(resource: Any, close: Any) -> AsyncIterator[Any]:
    try:
        yield resource
    finally:
        await close()


def spread(fanout: int) -> Sequence[str]:
    """Task names of one event of ``fanout`` jobs: a, b, c for 3, d for 1."""
    return TASKS[:fanout] if fanout > 1 else ("d",)
