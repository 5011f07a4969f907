"""A Litestar app that emits one event per POST, and its worker, for tests/test_spool_processes.py.

``uvicorn web_listeners:app``; both read taskemit's settings from ``TASKEMIT_*``. The listener
records each run in the test's Redis.
"""

from __future__ import annotations

from children import push
from litestar import Litestar, Request, post

from taskemit import listener, worker_settings
from taskemit.litestar import ArqEventEmitter


@listener("order_received", name="web.record")
async def record(n: int) -> None:
    await push("runs:web", str(n))


@post("/orders/{n:int}", status_code=202)
async def receive(n: int, request: Request) -> None:
    request.app.emit("order_received", n=n)


app = Litestar(route_handlers=[receive], listeners=[record], event_emitter_backend=ArqEventEmitter)
WorkerSettings = worker_settings(listeners=[record])
