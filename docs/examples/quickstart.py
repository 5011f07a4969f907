"""Listeners and the worker that runs them: `taskemit worker quickstart:WorkerSettings`."""

from __future__ import annotations

from taskemit import listener, worker_settings


def send_mail(to: str, text: str) -> None:
    """Stand-in for your mail client."""
    print(f"mail to {to}: {text}")


@listener("user_created")
async def send_welcome_email(email: str) -> None:
    send_mail(email, "Welcome!")


@listener("user_created", "password_changed")
async def send_account_email(email: str, message: str = "Your account was created.") -> None:
    send_mail(email, message)


LISTENERS = [send_welcome_email, send_account_email]

# A plain arq WorkerSettings class: `arq quickstart.WorkerSettings` runs it too.
WorkerSettings = worker_settings(LISTENERS)
