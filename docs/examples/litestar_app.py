"""Litestar's events example with taskemit as the event emitter backend.

Serve it:       uvicorn litestar_app:app
Run a worker:   taskemit worker litestar_app:WorkerSettings
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Litestar, Request, delete, post

from taskemit import listener, worker_settings
from taskemit.litestar import ArqEventEmitter


def send_mail(to: str, text: str) -> None:
    """Stand-in for your mail client."""
    print(f"mail to {to}: {text}")


def open_ticket(text: str) -> None:
    """Stand-in for your service desk's API."""
    print(f"ticket: {text}")


@listener("user_created")
async def send_welcome_email_handler(email: str) -> None:
    send_mail(email, "Welcome!")


# One listener, several events.
@listener("user_created", "password_changed")
async def send_email_handler(email: str, message: str = "Your account was created.") -> None:
    send_mail(email, message)


# Several listeners, one event; **kwargs takes the arguments each one does not use.
@listener("user_deleted")
async def send_farewell_email_handler(email: str, **kwargs: Any) -> None:
    send_mail(email, "Goodbye!")


@listener("user_deleted")
def notify_customer_support(reason: str, **kwargs: Any) -> None:
    # A sync listener: the worker runs it in a thread.
    open_ticket(f"user deleted: {reason}")


LISTENERS = [
    send_welcome_email_handler,
    send_email_handler,
    send_farewell_email_handler,
    notify_customer_support,
]


@dataclass
class CreateUserDTO:
    first_name: str
    last_name: str
    email: str


@dataclass
class PasswordChangeDTO:
    email: str


@dataclass
class DeleteUserDTO:
    email: str
    reason: str


@post("/users")
async def create_user_handler(data: CreateUserDTO, request: Request) -> None:
    # ... insert the user into your database ...
    request.app.emit("user_created", email=data.email)


@post("/users/password", sync_to_thread=True)
def change_password_handler(data: PasswordChangeDTO, request: Request) -> None:
    # A sync handler runs in a thread; emit() is safe to call from there.
    request.app.emit("password_changed", email=data.email, message="Your password was changed.")


@delete("/users")
async def delete_user_handler(data: DeleteUserDTO, request: Request) -> None:
    # ... delete the user ...
    request.app.emit("user_deleted", email=data.email, reason=data.reason)


def create_app() -> Litestar:
    return Litestar(
        route_handlers=[create_user_handler, change_password_handler, delete_user_handler],
        listeners=LISTENERS,
        event_emitter_backend=ArqEventEmitter,
    )


app = create_app()
WorkerSettings = worker_settings(LISTENERS)
