"""Commands only the Azure tests use (kept apart from commands.py, shared by all tests)."""
from __future__ import annotations

import time
from dataclasses import dataclass

from celery_bgp import BackgroundCommand, handler

from .commands import sink


@dataclass
class SlowAppend(BackgroundCommand):
    """Sleeps, then appends ``item`` to the Redis list ``key`` (work a SIGKILL interrupts)."""

    key: str
    item: str
    seconds: float = 0.2


@handler(SlowAppend)
def slow_append(command: SlowAppend) -> str:
    time.sleep(command.seconds)
    sink().rpush(command.key, command.item)
    return command.item
