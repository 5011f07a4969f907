"""A Litestar app that writes a row and emits an event about it in one database transaction.

advanced-alchemy's SQLAlchemyPlugin gives each request a session (``db_session``) and commits
it before the response goes out ("autocommit": a 2xx commits, anything else rolls back). The
handler emits with that session: the event is a row of taskemit's outbox table in the same
transaction, and the app's relay stores it in Redis once the transaction has committed.

Create the tables, serve the app, run a worker:
    taskemit outbox create-table --database-url sqlite+aiosqlite:///app.db   # or create_all, or Alembic
    DATABASE_URL=sqlite+aiosqlite:///app.db uvicorn transactions_app:app
    taskemit worker transactions_app:WorkerSettings
"""

from __future__ import annotations

import os

from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig, SQLAlchemyPlugin
from litestar import Litestar, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from sqlalchemy import String
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from taskemit import Emitter, listener, worker_settings
from taskemit.litestar import TaskEmitConfig, TaskEmitPlugin
from taskemit.outbox import outbox_table


class Base(DeclarativeBase):
    pass


class Signup(Base):
    __tablename__ = "signups"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(200), unique=True)


outbox_table(Base.metadata)  # taskemit's table beside the app's: create_all and Alembic see it


@listener("signed_up")
async def send_welcome_email(signup_id: int, email: str) -> None:
    print(f"welcome, {email} (signup {signup_id})")


class Refused(Exception):
    """A check that fails after the row was written and the event emitted."""


@post("/signups/{email:str}", status_code=201)
async def sign_up(
    email: FromPath[str], db_session: NamedDependency[AsyncSession], emitter: NamedDependency[Emitter]
) -> dict[str, int]:
    signup = Signup(email=email)
    db_session.add(signup)
    await db_session.flush()  # the row's id
    emitter.emit("signed_up", signup_id=signup.id, email=email, session=db_session)
    if email.endswith("@refused.example"):
        raise Refused(email)  # a 500: the transaction rolls back, with the event in it
    return {"id": signup.id}


def create_app(database_url: str) -> Litestar:
    database = SQLAlchemyAsyncConfig(connection_string=database_url, before_send_handler="autocommit")
    return Litestar(
        route_handlers=[sign_up],
        plugins=[
            SQLAlchemyPlugin(config=database),
            TaskEmitPlugin(TaskEmitConfig(listeners=[send_welcome_email], outbox=True)),
        ],
    )


app = create_app(os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///app.db"))
WorkerSettings = worker_settings(listeners=[send_welcome_email])
