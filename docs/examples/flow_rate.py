"""The mail provider takes 100 messages a second from this account, and each tenant's own sender
10 a second: two listeners, one rate each."""

from __future__ import annotations

from taskemit import listener

sent: list[tuple[str, str]] = []


@listener("newsletter_due", rate="100/s", burst=10)
async def send_newsletter(address: str) -> None:
    sent.append(("newsletter", address))


@listener("invoice_ready", rate="10/s", rate_key="tenant_id")
async def mail_invoice(tenant_id: str, invoice_id: int) -> None:
    sent.append((tenant_id, str(invoice_id)))
