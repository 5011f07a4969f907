"""web: requests/s of a Litestar app (uvicorn, one process) whose POST endpoint emits one event.

"taskemit": taskemit's Litestar backend stores one job per request in Redis (no worker runs
meanwhile); "simple": Litestar's SimpleEventEmitter runs the no-op listener in-process.
Load: wrk (1 thread, 32 connections) against 127.0.0.1 for a fixed time, after a 1 s warm-up;
without wrk, a bounded httpx loop.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.compare.process import WorkerGroup
from benchmarks.compare.scenarios.common import QUEUE, Context, redis_cpu_seconds
from benchmarks.compare.systems.base import PYTHON, ROOT
from taskemit.store.redis_server import free_port

NAME = "web"
TITLE = "web: requests/s, Litestar + uvicorn (1 process), one emit per POST"
UNIT = "req/s"
HIGHER_IS_BETTER = True
SYSTEMS = ("taskemit",)
VARIANTS = ("taskemit", "simple")
CONNECTIONS = 32
WRK_SCRIPT = 'wrk.method = "POST"\n'


def rounds(quick: bool) -> int:
    # short runs, alternating (taskemit, simple, taskemit, ...): the median ratio holds up
    # better on a shared machine than one long run of each
    return 3 if quick else 5


async def _wait_listening(port: int, server: WorkerGroup, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server.check_alive()
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise TimeoutError(f"uvicorn did not listen on port {port} within {timeout:.0f}s")


async def _wrk(url: str, seconds: float) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    try:
        process = await asyncio.create_subprocess_exec(
            "wrk",
            "-t1",
            f"-c{CONNECTIONS}",
            f"-d{max(1, round(seconds))}s",
            "-s",
            script.name,
            url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output = (await asyncio.wait_for(process.communicate(), seconds + 30))[0].decode()
    finally:
        Path(script.name).unlink(missing_ok=True)
    if "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"wrk saw errors: {output[-300:]}")
    found = re.search(r"Requests/sec:\s*([\d.]+)", output)
    if not found:
        raise RuntimeError(f"no Requests/sec in wrk output: {output[-300:]}")
    return float(found.group(1))


async def _httpx(url: str, seconds: float) -> float:
    import httpx

    count = 0
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=CONNECTIONS)) as client:

        async def loop() -> None:
            nonlocal count
            while time.perf_counter() < deadline:
                (await client.post(url)).raise_for_status()
                count += 1

        start = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(CONNECTIONS)))
        return count / (time.perf_counter() - start)


async def run(ctx: Context, variant: str) -> dict[str, Any]:
    seconds = 3.0 if ctx.quick else 6.0
    port = free_port()
    env = {
        "BENCH_REDIS_URL": ctx.url,
        "BENCH_WEB_EMITTER": variant,
        "TASKEMIT_REDIS_URL": ctx.url,
        "TASKEMIT_QUEUE_NAME": QUEUE,
    }
    command = [
        PYTHON,
        "-m",
        "uvicorn",
        "benchmarks.compare.apps.web_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    load = _wrk if shutil.which("wrk") else _httpx
    url = f"http://127.0.0.1:{port}/emit"
    with WorkerGroup([command], env, ROOT, ctx.logs / f"{ctx.run_id}-web-{variant}.log") as server:
        await _wait_listening(port, server)
        await load(url, 1.0)  # warm-up
        server_cpu, redis_cpu = server.cpu_seconds(), await redis_cpu_seconds(ctx)
        rate = await load(url, seconds)
        server_cpu, redis_cpu = server.cpu_seconds() - server_cpu, await redis_cpu_seconds(ctx) - redis_cpu
        server.check_alive()
    keys = int(await ctx.redis.dbsize())  # after a graceful stop: the emitter flushed
    if variant == "taskemit" and keys == 0:
        raise RuntimeError("nothing was stored in Redis")
    load_name = load.__name__.strip("_")
    requests = rate * seconds
    # CPU per request: uvicorn's is what the two variants differ by; a machine whose speed
    # drifts moves both, and this less than requests/s when the process waits for a core
    uvicorn_us, redis_us = server_cpu / requests * 1e6, redis_cpu / requests * 1e6
    return {
        "value": rate,
        "uvicorn_cpu_us_per_request": uvicorn_us,
        "redis_cpu_us_per_request": redis_us,
        "detail": f"CPU per request: uvicorn {uvicorn_us:.0f} us, Redis {redis_us:.0f} us",
        "redis_keys_after": keys,
        "seconds": seconds,
        "load": load_name,
        "connections": CONNECTIONS,
    }
