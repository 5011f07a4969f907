"""What a listener receives when its arguments travel as JSON."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from uuid import UUID

from taskemit import Emitter, Settings, listener


@listener("invoice_issued")
async def archive_invoice(**fields: Any) -> None:
    for name, value in fields.items():
        print(f"{name}: {value!r}")


async def main(settings: Settings | None = None) -> None:
    async with Emitter([archive_invoice], settings) as emitter:
        emitter.emit(
            "invoice_issued",
            invoice_id=UUID("7c0e5e2a-3f4b-4c9e-9a51-8f8d2b6e1f00"),
            issued_at=dt.datetime(2025, 1, 31, 9, 30, tzinfo=dt.UTC),
            due=dt.date(2025, 3, 1),
            total=Decimal("119.00"),
            pdf=b"%PDF-1.7",
            lines=("consulting", "travel"),
            quantities={1: 3, 2: 1},
        )
