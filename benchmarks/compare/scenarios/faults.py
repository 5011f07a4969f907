"""faults: how long work stops after each fault of the chaos run, and after a Sentinel failover.

Runs the test suite's chaos run (``tests/test_chaos.py``: connection resets, a partitioned
worker, OOM, a managed-endpoint failover with the old primary answering READONLY, under 50
events/s) and its Sentinel failover (``tests/test_sentinel.py``: the primary SIGKILLed, the
replica promoted, ``durability = "replicated"``), which assert nothing is lost or done twice, and
reports the time from each fault's end to the next job done. The value is the longest of them.
"""

from __future__ import annotations

import asyncio
import re
import sys
from typing import Any

from benchmarks.compare.scenarios.common import Context
from benchmarks.compare.systems.base import ROOT

NAME = "faults"
TITLE = "faults: seconds from a fault's end to the next job done (chaos run and Sentinel failover)"
UNIT = "s"
HIGHER_IS_BETTER = False
SYSTEMS = ("taskemit",)
VARIANTS = ("taskemit",)
_ROW = re.compile(r"^(?P<fault>.+?)\s+(?P<start>[\d.]+)\s+(?P<end>[\d.]+)\s+(?P<emitted>\d+)\s+(?P<after>[\d.]+)s$")
_SENTINEL = re.compile(r"sentinel failover: .* first job done (?P<after>[\d.]+)s after the primary was killed")
_SUMMARY = re.compile(r"^\d+ events accepted; .*$")


def rounds(quick: bool) -> int:
    return 1


async def run(ctx: Context, variant: str) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "chaos",
        "-s",
        "-q",
        "-p",
        "no:randomly",
        "tests/test_chaos.py",
        "tests/test_sentinel.py",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    text = out.decode(errors="replace")
    if process.returncode != 0:
        tail = " | ".join(text.strip().splitlines()[-5:])
        raise RuntimeError(f"the fault runs failed: {tail}")
    resumed: dict[str, float] = {}
    summary = ""
    for line in text.splitlines():
        row = _ROW.match(line.strip())
        if row:
            resumed[row["fault"].strip()] = float(row["after"])
        sentinel = _SENTINEL.search(line)
        if sentinel:
            resumed["Sentinel failover (primary SIGKILLed)"] = float(sentinel["after"])
        if _SUMMARY.match(line.strip()):
            summary = line.strip()
    if not resumed:
        raise RuntimeError("the fault runs printed no timeline")
    detail = "; ".join(f"{fault}: {after:.2f}s" for fault, after in resumed.items())
    return {"value": max(resumed.values()), "resumed": resumed, "detail": f"{detail}; {summary}"}
