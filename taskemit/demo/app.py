"""The users API of Litestar's events docs, with taskemit as the event emitter backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Litestar, Request, delete, post

from taskemit.litestar import ArqEventEmitter

from .listeners import LISTENERS


@dataclass
class CreateUserDTO:
    first_name: str
    last_name: str
    email: str


@dataclass
class DeleteUserDTO:
    email: str
    reason: str


@dataclass
class PasswordChangeDTO:
    email: str


@post("/users")
async def create_user_handler(data: CreateUserDTO, request: Request[Any, Any, Any]) -> None:
    # ... insert the user into a database ...
    request.app.emit("user_created", email=data.email)


@post("/users/password", sync_to_thread=True)
def change_password_handler(data: PasswordChangeDTO, request: Request[Any, Any, Any]) -> None:
    # a sync handler: Litestar runs it in a worker thread, where emit must work too
    request.app.emit("password_changed", email=data.email, message="your password was changed")


@delete("/users", status_code=200)
async def delete_user_handler(data: DeleteUserDTO, request: Request[Any, Any, Any]) -> None:
    # ... delete the user ...
    request.app.emit("user_deleted", email=data.email, reason=data.reason)


def create_app() -> Litestar:
    return Litestar(
        route_handlers=[create_user_handler, change_password_handler, delete_user_handler],
        listeners=LISTENERS,  # type: ignore[arg-type]  # taskemit listeners have EventListener's shape
        event_emitter_backend=ArqEventEmitter,
    )
