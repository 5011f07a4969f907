"""A Litestar app whose one POST endpoint emits one event: for the web scenario.

``uvicorn benchmarks.compare.apps.web_app:app``; BENCH_WEB_EMITTER picks the backend:
"taskemit" (one job stored in Redis per request, TASKEMIT_REDIS_URL / TASKEMIT_QUEUE_NAME; no
worker runs) or "simple" (Litestar's SimpleEventEmitter: the listener runs in-process).
"""

from __future__ import annotations

import os

from litestar import Litestar, Request, post
from litestar.events import SimpleEventEmitter
from litestar.events import listener as litestar_listener

from benchmarks.compare import probe


@litestar_listener("ev1")
async def d(n: int, t: float) -> None:
    probe.hit(t)


@post("/emit", status_code=204)
async def emit_one(request: Request) -> None:
    request.app.emit("ev1", n=1, t=0.0)


def create() -> Litestar:
    if os.environ.get("BENCH_WEB_EMITTER") == "taskemit":
        from benchmarks.compare.systems.taskemit import litestar_backend

        backend = litestar_backend()
    else:
        backend = SimpleEventEmitter
    return Litestar(route_handlers=[emit_one], listeners=[d], event_emitter_backend=backend)


app = create()
