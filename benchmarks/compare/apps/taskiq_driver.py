"""taskiq's producer, run by the harness with benchmarks/.venv-taskiq's python.

``python -m benchmarks.compare.apps.taskiq_driver fill JOBS FANOUT | paced RATE SECONDS | emit JOBS FANOUT``
with BENCH_REDIS_URL and BENCH_QUEUE set; prints one JSON line (``emit``: the timed seconds).
The loops mirror ``benchmarks.compare.systems.base.System``'s, with ``await task.kiq(...)``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from benchmarks.compare.apps.taskiq_app import TASKS, broker


def spread(fanout: int) -> tuple[str, ...]:
    return ("a", "b", "c")[:fanout] if fanout > 1 else ("d",)


async def send(fanout: int, n: int, t: float) -> None:
    for name in spread(fanout):
        await TASKS[name].kiq(n=n, t=t)


async def fill(jobs: int, fanout: int) -> dict[str, float]:
    events = jobs // fanout
    for first in range(0, events, 100):
        await asyncio.gather(*(send(fanout, n, 0.0) for n in range(first, min(first + 100, events))))
    return {}


async def paced(rate: float, seconds: float) -> dict[str, float]:
    total = int(rate * seconds)
    start = time.perf_counter()
    for n in range(total):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await send(1, n, time.time())
    return {"sent": total}


async def emit(jobs: int, fanout: int) -> dict[str, float]:
    start = time.perf_counter()
    for n in range(jobs // fanout):
        await send(fanout, n, 0.0)
    return {"seconds": time.perf_counter() - start}


async def main(argv: list[str]) -> None:
    operation, first, second = argv[0], float(argv[1]), float(argv[2])
    await broker.startup()  # creates the stream's consumer group before anything is added
    try:
        if operation == "fill":
            result = await fill(int(first), int(second))
        elif operation == "paced":
            result = await paced(first, second)
        elif operation == "emit":
            result = await emit(int(first), int(second))
        else:
            raise SystemExit(f"unknown operation {operation}")
    finally:
        await broker.shutdown()
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
