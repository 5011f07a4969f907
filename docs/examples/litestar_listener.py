"""Listeners written with Litestar's own decorator run unchanged, exceptions included."""

from __future__ import annotations

from litestar.events import listener

from taskemit import worker_settings


class PaymentDeclined(Exception):
    pass


def charge(order_id: int, amount: str) -> None:
    """Stand-in for your payment provider."""
    print(f"charged {amount} for order {order_id}")


@listener("order_placed")
async def charge_card(order_id: int, amount: str) -> None:
    charge(order_id, amount)  # a PaymentDeclined raised here reaches the worker


LISTENERS = [charge_card]
WorkerSettings = worker_settings(LISTENERS)
