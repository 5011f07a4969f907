"""Machine and software facts written next to the figures."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from typing import Any

import psutil


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
