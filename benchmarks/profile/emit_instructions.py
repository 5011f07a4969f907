"""What one stored emit costs in instructions, counted by valgrind (repeatable on a noisy machine).

    python -m benchmarks.profile.emit_instructions [--events 2000]

Runs this module's ``emit`` mode twice under ``valgrind --tool=callgrind``, with no events and
with ``--events`` events (emitted in batches of 20, each batch stored by the flusher as a web
server's loop would), against a private redis-server, and prints the difference per event:
the instructions an emit costs the emitting process, preparing and storing included, with
start-up and imports subtracted. Needs valgrind (Debian's ``valgrind`` package).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile

from benchmarks.compare.machine import newest_redis_server
from taskemit import Emitter, listener, load_settings
from taskemit.store.redis_server import RedisServer

BATCH = 20


@listener("ev1")
async def handler(n: int, t: float) -> None:
    """The benchmark's one-listener event (the web scenario's)."""


async def emit(url: str, events: int) -> None:
    settings = load_settings(redis_url=url, emit_buffer_size=200_000, spool=False)
    async with Emitter([handler], settings) as emitter:
        for _ in range(200):  # warm-up: first-use paths, caches
            emitter.emit("ev1", n=1, t=0.0)
        await asyncio.sleep(0.2)
        for _ in range(events // BATCH):
            for _ in range(BATCH):
                emitter.emit("ev1", n=1, t=0.0)
            await asyncio.sleep(0)
        await asyncio.sleep(0.3)


def _instructions(url: str, events: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={tmp}/callgrind.out",
            sys.executable,
            "-m",
            __spec__.name if __spec__ else "benchmarks.profile.emit_instructions",
            "--emit",
            url,
            "--events",
            str(events),
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=True, env=dict(os.environ))
    found = re.search(r"Collected\s*:\s*(\d+)", result.stderr)
    if not found:
        raise RuntimeError(f"no instruction count in valgrind's output: {result.stderr[-500:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--emit", metavar="URL", help=argparse.SUPPRESS)  # the measured child
    options = parser.parse_args()
    if options.emit:
        asyncio.run(emit(options.emit, options.events))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    with RedisServer(binary=newest_redis_server()) as server:
        base = _instructions(server.url, 0)
        loaded = _instructions(server.url, options.events)
    per_event = (loaded - base) / options.events
    print(f"{per_event / 1000:.1f}k instructions per stored emit ({options.events} events, batches of {BATCH})")


if __name__ == "__main__":
    main()
