"""Event classes for the typed-event tests (importable by path, as a worker imports them)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import msgspec
from pydantic import BaseModel


@dataclasses.dataclass
class TodoCreated:
    name: str
    content: str


@dataclasses.dataclass
class TodoExpired:
    name: str


class InvoicePaid(msgspec.Struct):
    invoice: int
    amount: float


class OrderShipped(BaseModel):
    order: int
    at: dt.datetime


@dataclasses.dataclass
class UserEvent:
    user: int


@dataclasses.dataclass
class UserCreated(UserEvent):
    email: str


@dataclasses.dataclass
class UserDeleted(UserEvent):
    reason: str = ""


@dataclasses.dataclass
class Quantity:
    count: int
