"""The examples of docs/flow-control.md, run (tests/test_docs.py checks that the page shows them)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from taskemit import Emitter
from taskemit.engine import InProcessWorker
from taskemit.settings import Settings


class Timed(list[tuple[float, Any]]):
    """A list whose appends are stamped with the time (what an example's listener appends)."""

    def append(self, item: Any) -> None:
        super().append((time.monotonic(), item))


@pytest.fixture
def settings(taskemit_settings: Settings) -> Settings:
    return taskemit_settings.model_copy(update={"drain_on_exit": False, "idle_poll": 30.0})


async def until(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


async def test_flow_concurrency_holds_three_across_two_workers(
    settings: Settings, examples: Callable[[str], ModuleType]
) -> None:
    module = examples("flow_concurrency")
    async with Emitter([module.build_report], settings) as emitter:
        receipts = [await emitter.publish("report_requested", report_id=n) for n in range(12)]
    async with InProcessWorker([module.build_report], settings), InProcessWorker([module.build_report], settings):
        for receipt in receipts:
            assert receipt is not None
            await receipt.wait(timeout=20)
    assert module.most == 3


async def test_flow_rate_bucket_and_keys(
    settings: Settings, examples: Callable[[str], ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    module = examples("flow_rate")
    sent = Timed()
    monkeypatch.setattr(module, "sent", sent)
    async with Emitter([module.send_newsletter, module.mail_invoice], settings) as emitter:
        for n in range(30):
            emitter.emit("newsletter_due", address=f"reader{n}@example.com")
        for n in range(4):
            emitter.emit("invoice_ready", tenant_id="acme", invoice_id=n)
            emitter.emit("invoice_ready", tenant_id="globex", invoice_id=n)
    async with InProcessWorker([module.send_newsletter, module.mail_invoice], settings):
        await until(lambda: len(sent) == 38)
    newsletters = [at for at, (kind, _) in sent if kind == "newsletter"]
    # a bucket of 10, refilled at 100/s: 10 at once, then one each 10 ms: 30 take about 0.2 s
    assert 0.15 < newsletters[-1] - newsletters[0] < 2
    assert sum(at - newsletters[0] < 0.05 for at in newsletters) <= 10 + 5
    for tenant in ("acme", "globex"):
        times = [at for at, (kind, _) in sent if kind == tenant]
        assert len(times) == 4 and times[-1] - times[0] > 3 * 0.1 * 0.9  # 10/s each, burst 1
    acme, globex = ([at for at, (kind, _) in sent if kind == t] for t in ("acme", "globex"))
    assert abs(acme[0] - globex[0]) < 0.09  # the keys do not wait for each other


async def test_flow_ordering_keys_and_dead_jobs_passing(
    settings: Settings, examples: Callable[[str], ModuleType]
) -> None:
    module = examples("flow_ordering")
    module.applied.clear()
    module.booked.clear()
    async with Emitter([module.apply_change, module.book_move], settings) as emitter:
        for order in ("A-1", "A-2", "A-3"):
            await module.change_order(emitter, order)
        await module.import_customer(emitter, "c-9")
        for quantity in (0, 5, 7):
            emitter.emit("stock_moved", sku="sku-1", quantity=quantity)
    async with InProcessWorker([module.apply_change, module.book_move], settings, concurrency=20):
        await until(lambda: len(module.applied) == 10 and len(module.booked) == 2)
    for order in ("A-1", "A-2", "A-3"):
        assert [change for key, change in module.applied if key == order] == ["created", "paid", "shipped"]
    assert ("-", "customer c-9") in module.applied
    assert module.booked == [("sku-1", 5), ("sku-1", 7)]  # past the dead one, in order


async def test_flow_priority_jumps_the_queue(settings: Settings, examples: Callable[[str], ModuleType]) -> None:
    module = examples("flow_priority")
    module.sent.clear()
    async with Emitter([module.send_newsletter, module.send_reset_link], settings) as emitter:
        for n in range(20):
            emitter.emit("newsletter_due", address=f"reader{n}@example.com")
        emitter.emit("password_reset", address="ada@example.com")
        await module.resend(emitter, "grace@example.com")
    async with InProcessWorker([module.send_newsletter, module.send_reset_link], settings, concurrency=1):
        await until(lambda: len(module.sent) == 22)
    assert module.sent[:2] == ["reset link to grace@example.com", "reset link to ada@example.com"]
