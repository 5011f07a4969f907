"""Litestar's mismatched-arguments example: taskemit rejects the emit itself."""

from __future__ import annotations

from taskemit import Emitter, Settings, listener


@listener("user_deleted")
async def send_farewell_email_handler(email: str) -> None: ...


@listener("user_deleted")
async def notify_customer_support(reason: str) -> None: ...


async def main(settings: Settings | None = None) -> None:
    listeners = [send_farewell_email_handler, notify_customer_support]
    async with Emitter(listeners, settings) as emitter:
        try:
            emitter.emit("user_deleted", email="ada@example.com", reason="deleted")
        except TypeError as exc:  # taskemit.ListenerArgumentError
            print(exc)
