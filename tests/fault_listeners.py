"""The listener of the fault runs (tests/test_sentinel.py, tests/test_chaos.py), imported by the
worker processes they start: each run appends a line to a ledger file (``LEDGER_PATH``), which
lives outside the Redis being broken."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from taskemit import Attempt, listener, worker_settings


@listener("fault_tick", timeout=60)
async def record(n: int, attempt: Attempt) -> None:
    """Some I/O, then one line: the event's number, the attempt, the process, when it finished."""
    await asyncio.sleep(0.01)
    with Path(os.environ["LEDGER_PATH"]).open("a") as ledger:
        ledger.write(f"{n} {attempt.number} {os.getpid()} {time.time():.3f}\n")


def read_ledger(path: Path) -> list[tuple[int, int, int, float]]:
    """The ledger's lines: (event number, attempt, pid, finished at)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        n, number, pid, at = line.split()
        rows.append((int(n), int(number), int(pid), float(at)))
    return rows


WorkerSettings = worker_settings(listeners=[record])
