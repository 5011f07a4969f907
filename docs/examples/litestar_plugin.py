"""A Litestar app with TaskEmitPlugin: listeners, a cron schedule, the Emitter as a dependency,
and the dashboard at /taskemit for admins.

Serve it, with a worker in the app:   ADMIN_TOKEN=... CSRF_SECRET=... uvicorn litestar_plugin:app
The taskemit commands, on its settings:  litestar --app litestar_plugin:app taskemit events
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from litestar import Litestar, post
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.exceptions import PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from taskemit import Emitter, cron, listener
from taskemit.litestar import TaskEmitConfig, TaskEmitPlugin


@listener("order_placed")
async def send_receipt(order_id: int, email: str) -> str:
    return f"receipt for order {order_id} sent to {email}"


@listener("sales_report_due")
async def build_sales_report(period: str) -> None:
    print(f"building the {period} sales report")


def admins_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Stand-in for your own authentication (``connection.user``, a session, ...)."""
    if connection.headers.get("x-admin-token") != os.environ["ADMIN_TOKEN"]:
        raise PermissionDeniedException("the taskemit dashboard is for admins")


@dataclass
class Order:
    order_id: int
    email: str


@post("/orders")
async def place_order(data: Order, emitter: NamedDependency[Emitter]) -> dict[str, Any]:
    receipt = await emitter.publish("order_placed", order_id=data.order_id, email=data.email)
    assert receipt is not None
    return {"event": receipt.event_uuid, "jobs": receipt.jobs}


def create_app() -> Litestar:
    plugin = TaskEmitPlugin(
        TaskEmitConfig(
            listeners=[send_receipt, build_sales_report],
            crons=[cron("0 6 * * *", "sales_report_due", period="daily", name="daily sales report")],
            run_workers_in_app=True,  # development: a worker and the cron scheduler run in the app
            dashboard_path="/taskemit",
            guards=[admins_only],
            csrf_secret=os.environ["CSRF_SECRET"],  # the app has no csrf_config: protect the dashboard
        )
    )
    return Litestar(route_handlers=[place_order], plugins=[plugin])


app = create_app()
