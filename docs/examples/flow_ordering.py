"""The changes to one order are applied one at a time, in the order they were emitted; other
orders' changes go on meanwhile."""

from __future__ import annotations

from taskemit import Emitter, listener

applied: list[tuple[str, str]] = []


@listener("order_changed", ordered_by="order_id", max_tries=5)
async def apply_change(order_id: str, change: str) -> None:
    applied.append((order_id, change))


booked: list[tuple[str, int]] = []


# a move that fails for good is dead-lettered, and the sku's later moves go on without it
@listener("stock_moved", ordered_by="sku", pass_dead=True, max_tries=1)
async def book_move(sku: str, quantity: int) -> None:
    if quantity == 0:
        raise ValueError("a move of nothing")
    booked.append((sku, quantity))


async def change_order(emitter: Emitter, order_id: str) -> None:
    emitter.emit("order_changed", order_id=order_id, change="created")
    emitter.emit("order_changed", order_id=order_id, change="paid")
    emitter.emit("order_changed", order_id=order_id, change="shipped")


async def import_customer(emitter: Emitter, customer_id: str) -> None:
    # a key of the emit's own, for listeners that do not declare one (or to override theirs)
    emitter.emit("order_changed", order_id="-", change=f"customer {customer_id}", ordering_key=customer_id)
