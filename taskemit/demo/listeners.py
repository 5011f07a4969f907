"""The listeners of Litestar's events docs, as taskemit listeners, and their WorkerSettings.

Run a worker for them with ``taskemit worker taskemit.demo.listeners:WorkerSettings`` or
``arq taskemit.demo.listeners.WorkerSettings``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from taskemit import listener, worker_settings


async def _deliver(what: str) -> str:
    await asyncio.sleep(0.05)  # stands in for an SMTP or HTTP call
    return what


@listener("user_created")
async def send_welcome_email_handler(email: str) -> str:
    return await _deliver(f"welcome mail to {email}")


@listener("user_created", "password_changed")
async def send_email_handler(email: str, message: str = "") -> str:
    return await _deliver(f"mail to {email}: {message or '(no message)'}")


@listener("user_deleted")
async def send_farewell_email_handler(email: str, **kwargs: Any) -> str:
    return await _deliver(f"farewell mail to {email}")


@listener("user_deleted")
def notify_customer_support(reason: str, **kwargs: Any) -> str:
    # a sync listener: the worker runs it in a thread
    return f"support ticket: user left ({reason})"


LISTENERS = [
    send_welcome_email_handler,
    send_email_handler,
    send_farewell_email_handler,
    notify_customer_support,
]

WorkerSettings = worker_settings(listeners=LISTENERS)
