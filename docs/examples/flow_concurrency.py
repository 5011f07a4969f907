"""At most three reports are built at once, however many workers run: the database they read
from takes no more. (``most`` counts how many ran at once, in this process.)"""

from __future__ import annotations

import asyncio

from taskemit import listener

running = most = 0


@listener("report_requested", concurrency=3)
async def build_report(report_id: int) -> None:
    global running, most
    running += 1
    most = max(most, running)
    try:
        await asyncio.sleep(0.05)  # a heavy query
    finally:
        running -= 1
