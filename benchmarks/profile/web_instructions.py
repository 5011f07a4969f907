"""What one request of the web scenario's app costs uvicorn in instructions, with taskemit and
with Litestar's SimpleEventEmitter, counted by valgrind (repeatable on a noisy machine).

    python -m benchmarks.profile.web_instructions [--requests 1500] [--cache-sim]

For each variant (``benchmarks.compare.apps.web_app``: one emit per POST), runs uvicorn under
``valgrind --tool=callgrind`` twice against a private redis-server, once serving 300 requests
and once 300 + ``--requests``, from 32 concurrent connections (httpx), and prints the
difference per request: what a request costs the web process, start-up and imports subtracted.
The web scenario's requests/s on a shared 2-core machine also move with whatever else runs
(redis-server included); this count does not. ``--cache-sim`` adds callgrind's simulated L1
instruction and data cache misses per request (slower). Needs valgrind (Debian's ``valgrind``
package).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import httpx

from benchmarks.compare.machine import newest_redis_server
from benchmarks.compare.systems.base import ROOT
from taskemit.store.redis_server import RedisServer, free_port

VARIANTS = ("taskemit", "simple")
CONNECTIONS = 32
BASE_REQUESTS = 300


async def _post(url: str, requests: int) -> None:
    left = requests
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=CONNECTIONS), timeout=60) as client:

        async def loop() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                (await client.post(url)).raise_for_status()

        await asyncio.gather(*(loop() for _ in range(CONNECTIONS)))


#: what callgrind counts: instructions, then (with --cache-sim) L1 instruction and data misses
COUNTS = (
    ("instructions", r"Collected\s*:\s*([\d,]+)"),
    ("I1 misses", r"I1\s+misses:\s*([\d,]+)"),
    ("D1 misses", r"D1\s+misses:\s*([\d,]+)"),
)


def _counts(variant: str, redis_url: str, requests: int, cache_sim: bool) -> dict[str, int]:
    port = free_port()
    env = {
        **os.environ,
        "BENCH_REDIS_URL": redis_url,
        "BENCH_WEB_EMITTER": variant,
        "TASKEMIT_REDIS_URL": redis_url,
        "TASKEMIT_QUEUE_NAME": "bench",
    }
    url = f"http://127.0.0.1:{port}/emit"
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(
            [
                "valgrind",
                "--tool=callgrind",
                f"--cache-sim={'yes' if cache_sim else 'no'}",
                f"--callgrind-out-file={tmp}/callgrind.out",
                sys.executable,
                "-m",
                "uvicorn",
                "benchmarks.compare.apps.web_app:app",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 300  # imports under valgrind take a while
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
                    break
                except httpx.HTTPError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("uvicorn did not start under valgrind") from None
                    time.sleep(1)
            asyncio.run(_post(url, requests))
        finally:
            server.send_signal(signal.SIGINT)
            stderr = server.communicate(timeout=300)[1]
    counts = {}
    for name, pattern in COUNTS[: 3 if cache_sim else 1]:
        found = re.search(pattern, stderr)
        if not found:
            raise RuntimeError(f"no {name} in valgrind's output: {stderr[-500:]}")
        counts[name] = int(found.group(1).replace(",", ""))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--cache-sim", action="store_true", help="also simulated L1 cache misses (slower)")
    options = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    per_request: dict[str, float] = {}
    with RedisServer(binary=newest_redis_server()) as server:
        for variant in VARIANTS:
            base = _counts(variant, server.url, BASE_REQUESTS, options.cache_sim)
            loaded = _counts(variant, server.url, BASE_REQUESTS + options.requests, options.cache_sim)
            each = {name: (loaded[name] - base[name]) / options.requests for name in base}
            per_request[variant] = each["instructions"]
            shown = ", ".join(f"{value / 1000:.1f}k {name}" for name, value in each.items())
            print(f"{variant}: per request {shown}", flush=True)
    ratio = per_request["simple"] / per_request["taskemit"]
    print(f"taskemit / simple, requests per instruction: {ratio:.2f}x ({options.requests} requests each)")


if __name__ == "__main__":
    main()
