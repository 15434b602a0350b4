"""The command type the fuzzers decode into (shared by hypothesis and atheris runs)."""
from __future__ import annotations

import dataclasses
from enum import Enum
from uuid import UUID

from celery_bgp import BackgroundCommand


class Size(Enum):
    S = "s"
    L = "l"


@dataclasses.dataclass
class Inner:
    name: str
    weight: float


@dataclasses.dataclass
class Order(BackgroundCommand):
    sku: str
    quantity: int
    size: Size = Size.S
    ref: UUID | None = None
    tags: list[str] = dataclasses.field(default_factory=list)
    inner: Inner | None = None
