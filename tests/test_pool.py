"""The worker pool's supervisor (``taskemit worker -p N``) with real child processes: the delay
before restarting a crashed child doubles and starts over after a stable run, a child that ignores
SIGTERM is killed past ``stop_timeout``. (Recycling is tested with real workers in
test_engine_processes.py.)"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

#: runs a WorkerPool in a process of its own (it installs signal handlers), logging to stdout
SUPERVISOR = """
import json, logging, sys
from taskemit.engine import pool
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
options = json.loads(sys.argv[1])
pool._STABLE_AFTER = options["stable_after"]
sys.exit(pool.WorkerPool(options["command"], 1, stop_timeout=options["stop_timeout"]).run())
"""


def supervise(
    log: Path, command: list[str], *, stable_after: float = 30.0, stop_timeout: float = 30.0
) -> subprocess.Popen[bytes]:
    options = {"command": command, "stable_after": stable_after, "stop_timeout": stop_timeout}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", SUPERVISOR, json.dumps(options)], stdout=out, stderr=subprocess.STDOUT
        )


async def until(check: Callable[[], bool], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, log.read_text()
        await asyncio.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_the_restart_delay_doubles_and_starts_over_after_a_stable_run(tmp_path: Path) -> None:
    log, count = tmp_path / "pool.log", tmp_path / "runs"
    # every run exits with code 3 at once, but the fourth, which lives 4 s: past stable_after (2 s)
    child = f"n=$(( $(cat {count} 2>/dev/null || echo 0) + 1 )); echo $n > {count}; [ $n = 4 ] && sleep 4; exit 3"
    pool = supervise(log, ["/bin/sh", "-c", child], stable_after=2.0)

    def delays() -> list[float]:
        return [float(d) for d in re.findall(r"exited with code 3; restarting in ([0-9.]+)s", log.read_text())]

    try:
        await until(lambda: len(delays()) >= 6, log)
    finally:
        pool.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(pool.wait, 60)
    assert code == 0
    assert delays()[:6] == [0.5, 1.0, 2.0, 0.5, 1.0, 2.0]


async def test_a_child_ignoring_sigterm_is_killed_past_stop_timeout(tmp_path: Path) -> None:
    log = tmp_path / "pool.log"
    stubborn = "trap '' TERM; echo ready; exec sleep 600"  # SIGTERM stays ignored through exec
    pool = supervise(log, ["/bin/sh", "-c", stubborn], stop_timeout=1.0)
    child: int | None = None
    try:
        await until(lambda: "ready" in log.read_text(), log)
        (child,) = (int(pid) for pid in re.findall(r"worker 0 started \(pid (\d+)\)", log.read_text()))
        pool.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(pool.wait, 60)  # without the kill: the child's 600 s
    finally:
        if pool.poll() is None:
            pool.kill()
            pool.wait()
        if child is not None and _alive(child):
            os.kill(child, signal.SIGKILL)  # left behind by a supervisor that failed to kill it
    assert code == 0
    text = log.read_text()
    assert "received SIGTERM; stopping 1 workers" in text
    assert f"worker 0 (pid {child}) did not stop in time; killing it" in text
    assert not _alive(child)
