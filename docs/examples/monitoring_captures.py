"""The terminal captures in docs/monitoring.md: `python docs/examples/monitoring_captures.py`.

It starts a private redis-server, emits a few events whose listeners succeed, succeed on a
retry, or fail for good, runs a worker in this process, and writes what each `taskemit`
command prints to docs/captures/.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

from click.testing import CliRunner
from prometheus_client import generate_latest

from taskemit import Attempt, Backoff, Emitter, listener, load_settings
from taskemit.cli import cli
from taskemit.engine import InProcessWorker
from taskemit.monitor.metrics import metrics_registry
from taskemit.store.redis_server import RedisServer

CAPTURES = Path(__file__).resolve().parents[1] / "captures"


@listener("order_placed", name="shop:send_receipt")
async def send_receipt(order_id: int, email: str) -> str:
    return f"receipt for order {order_id} sent to {email}"


@listener("order_placed", name="shop:update_crm", max_tries=3, backoff=Backoff.fixed(1.0))
async def update_crm(order_id: int, email: str, attempt: Attempt) -> None:
    if attempt.number == 1:
        raise ConnectionError("crm.internal: connection reset by peer")


@listener("order_shipped", name="shop:notify_carrier", max_tries=3, backoff=Backoff.fixed(0.2))
async def notify_carrier(order_id: int, carrier: str) -> None:
    raise ConnectionRefusedError(f"{carrier} API refused the connection")


LISTENERS = [send_receipt, update_crm, notify_carrier]


async def main(out: Path = CAPTURES) -> dict[str, str]:
    """Write one capture per view to ``out``; returns them by name."""
    captures: dict[str, str] = {}
    with RedisServer() as server:
        settings = load_settings(redis_url=server.url, queue_name="shop:orders", drain_on_exit=False)
        env = {"TASKEMIT_REDIS_URL": settings.redis_url, "TASKEMIT_QUEUE_NAME": settings.queue_name}

        async def taskemit(name: str, *args: str, exit_code: int = 0) -> None:
            """Run `taskemit ARGS` as a terminal would, and add it to capture ``name``."""
            result = await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=env)
            assert result.exit_code == exit_code, f"taskemit {' '.join(args)}: {result.output}"
            lines = [f"$ taskemit {' '.join(args)}", *result.output.splitlines()]
            if name == "check":
                lines += ["$ echo $?", str(result.exit_code)]
            captures[name] = captures.get(name, "") + "".join(f"{_relative(line)}\n" for line in lines)

        async with Emitter(LISTENERS, settings) as emitter:
            first = await emitter.publish("order_placed", order_id=1001, email="ada@example.com")
            second = await emitter.publish("order_placed", order_id=1002, email="grace@example.com")
            shipped = await emitter.publish("order_shipped", order_id=1001, carrier="acme")
        assert first and second and shipped

        async with InProcessWorker(LISTENERS, settings):
            # the first order while its CRM update waits for its second attempt
            while (event := await first.status()) is None or event.status != "retrying":
                assert event is None or not event.done, "the retry ran before it could be captured"
                await asyncio.sleep(0.02)
            await taskemit("status_event", "status", first.event_uuid)
            for receipt in (first, second, shipped):
                await receipt.wait(timeout=20)
            await taskemit("workers", "workers")
            await taskemit("check", "check")
            # what `taskemit metrics` and metrics_route() serve, less the histogram buckets
            exposition = generate_latest(metrics_registry(settings)).decode().splitlines()
            captures["metrics"] = "".join(f"{line}\n" for line in exposition if "_bucket{" not in line)
        await taskemit("check", "check", exit_code=1)  # the worker has stopped

        async with Emitter(LISTENERS, settings) as emitter:  # no worker runs it: queued
            later = await emitter.publish("order_placed", order_id=1003, email="alan@example.com")
        assert later is not None

        dead_job = shipped.jobs[notify_carrier.name]
        await taskemit("status_job", "status", dead_job)
        await taskemit("events", "events")
        await taskemit("events_failed", "events", "--status", "failed")
        await taskemit("stats", "stats")
        await taskemit("dead_list", "dead", "list")
        await taskemit("dead_show", "dead", "show", dead_job)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in captures.items():
        (out / f"{name}.txt").write_text(text, encoding="utf-8")
    return captures


def _relative(line: str) -> str:
    """The line without trailing blanks, and with paths shown relative to the working directory
    (padded so that table borders stay aligned)."""
    prefix = f"{Path.cwd()}{os.sep}"
    padded = re.sub(re.escape(prefix) + r"([^│]*)(│|$)", lambda m: m[1] + " " * len(prefix) + m[2], line)
    return padded.rstrip()


if __name__ == "__main__":
    asyncio.run(main())
