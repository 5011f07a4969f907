"""taskiq + taskiq-redis (RedisStreamBroker), in a virtualenv of its own.

taskiq-redis needs redis-py >= 6 and arq pins redis < 6, so taskiq runs from
benchmarks/.venv-taskiq (created on first use). Its producer is a subprocess too
(apps/taskiq_driver.py); its worker is ``taskiq worker ... --workers 1`` (one child process
under taskiq's supervisor), with taskiq's default 100 async tasks and prefetch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

from benchmarks.compare.systems.base import ROOT, System

VENV = ROOT / "benchmarks" / ".venv-taskiq"
PACKAGES = ("taskiq", "taskiq-redis")
DRIVER_TIMEOUT = 300.0


def venv_python() -> Path:
    return VENV / "bin" / "python"


class Taskiq(System):
    name = "taskiq"
    settings: ClassVar[dict[str, Any]] = {
        "broker": "RedisStreamBroker",
        "workers": 1,
        "max_async_tasks": "default (100)",
    }

    def prepare(self) -> None:
        if venv_python().exists() and self._installed():
            return
        print(f"creating {VENV.relative_to(ROOT)} for taskiq (its redis-py conflicts with arq's)...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=120)
        subprocess.run([str(venv_python()), "-m", "pip", "install", "-q", *PACKAGES], check=True, timeout=900)

    def _installed(self) -> bool:
        probe = "import taskiq, taskiq_redis"
        return subprocess.run([str(venv_python()), "-c", probe], capture_output=True, timeout=60).returncode == 0

    def worker_commands(self, processes: int) -> list[list[str]]:
        command = [str(venv_python()), "-m", "taskiq", "worker", "benchmarks.compare.apps.taskiq_app:broker"]
        return [[*command, "--workers", str(processes), "--no-configure-logging"]]

    def worker_env(self) -> dict[str, str]:
        return {"PYTHONPATH": str(ROOT)}

    def versions(self) -> dict[str, str]:
        code = (
            "import importlib.metadata as m, json, sys; "
            "print(json.dumps({n: m.version(n) for n in ('taskiq', 'taskiq-redis', 'redis')} | "
            "{'python': sys.version.split()[0]}))"
        )
        try:
            out = subprocess.run([str(venv_python()), "-c", code], capture_output=True, text=True, timeout=60)
            return dict(json.loads(out.stdout))
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            return {"taskiq": f"unavailable: {exc}"}

    def producer(self, url: str, queue: str) -> Any:
        raise NotImplementedError("taskiq's producer runs in its own venv: see fill/paced/emit_loop")

    async def _driver(self, url: str, queue: str, *args: object) -> dict[str, float]:
        import asyncio

        env = {**os.environ, "BENCH_REDIS_URL": url, "BENCH_QUEUE": queue, "PYTHONPATH": str(ROOT)}
        process = await asyncio.create_subprocess_exec(
            str(venv_python()),
            "-m",
            "benchmarks.compare.apps.taskiq_driver",
            *map(str, args),
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), DRIVER_TIMEOUT)
        except BaseException:
            process.kill()
            await process.wait()
            raise
        if process.returncode != 0:
            raise RuntimeError(f"taskiq driver failed: {stderr.decode()[-500:]}")
        return dict(json.loads(stdout.decode().strip().splitlines()[-1]))

    async def fill(self, url: str, queue: str, jobs: int, fanout: int) -> None:
        await self._driver(url, queue, "fill", jobs, fanout)

    async def paced(self, url: str, queue: str, rate: float, seconds: float) -> int:
        return int((await self._driver(url, queue, "paced", rate, seconds))["sent"])

    async def emit_loop(self, url: str, queue: str, jobs: int, fanout: int) -> float:
        return (await self._driver(url, queue, "emit", jobs, fanout))["seconds"]
