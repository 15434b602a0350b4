"""Job records as plain data: what a job store persists and returns.

Stores exchange these dataclasses, never ORM objects, so the engine, the admin and
the tests see the same shapes whatever the backend.
"""
from __future__ import annotations

import dataclasses
import enum
from datetime import datetime
from typing import Any

__all__ = [
    "RELEASING_STATES",
    "ContinuationRecord",
    "JobKind",
    "JobRecord",
    "LockInfo",
    "LogRecord",
    "On",
    "StateRecord",
    "Transition",
]


class JobKind(str, enum.Enum):
    """What runs: an importable callable, or a typed command's handler."""

    CALLABLE = "callable"
    COMMAND = "command"


class On(enum.Flag):
    """Parent states that release a continuation (HiveMind's continuation flags)."""

    SUCCEEDED = enum.auto()
    FAILED = enum.auto()
    DELETED = enum.auto()
    EXECUTING = enum.auto()
    FINISHED = SUCCEEDED | FAILED
    ANY = SUCCEEDED | FAILED | DELETED

    @classmethod
    def parse(cls, value: On | str) -> On:
        """Accept an ``On`` or a name such as ``"finished"`` / ``"succeeded|failed"``."""
        if isinstance(value, On):
            return value
        flag = cls(0)
        for part in str(value).split("|"):
            try:
                flag |= cls[part.strip().upper()]
            except KeyError:
                raise ValueError(
                    f"unknown continuation state {part.strip()!r}; use one of "
                    "succeeded, failed, deleted, finished, any, executing"
                ) from None
        return flag

    def matches(self, state: str) -> bool:
        """True if a parent in ``state`` releases this continuation."""
        member = _STATE_FLAGS.get(state)
        return member is not None and bool(self & member)

    def to_text(self) -> str:
        """Stable text form (``"succeeded|failed"``), for storage."""
        return "|".join(m.name.lower() for m in _ATOMS if m & self)


_ATOMS = (On.SUCCEEDED, On.FAILED, On.DELETED, On.EXECUTING)
_STATE_FLAGS = {
    "Succeeded": On.SUCCEEDED,
    "Failed": On.FAILED,
    "Deleted": On.DELETED,
    "Cancelled": On.DELETED,
    "Executing": On.EXECUTING,
}
#: States whose application may release or delete continuations.
RELEASING_STATES = frozenset(_STATE_FLAGS)


@dataclasses.dataclass(frozen=True)
class LockInfo:
    """Who holds a job, since when, and their last sign of life."""

    holder: str
    acquired: datetime
    heartbeat: datetime
    expires: datetime


@dataclasses.dataclass
class JobRecord:
    """A job as stored. ``state`` is the name of the current state."""

    id: str
    name: str
    kind: JobKind
    queue: str
    priority: int
    environment: str
    state: str
    created: datetime
    modified: datetime
    args: list[Any] = dataclasses.field(default_factory=list)
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    middleware: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    execution_id: str | None = None
    attempt: int = 0
    worker: str | None = None
    result: Any = None
    lock: LockInfo | None = None


@dataclasses.dataclass(frozen=True)
class StateRecord:
    """One entry of a job's state history."""

    name: str
    elected: datetime
    reason: str | None = None
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    sequence: int = 0


@dataclasses.dataclass(frozen=True)
class LogRecord:
    """A log line a job wrote through its context."""

    level: int
    message: str
    time: datetime
    exception: str | None = None


@dataclasses.dataclass(frozen=True)
class ContinuationRecord:
    """Run ``child_id`` when ``parent_id`` reaches a state in ``on``."""

    parent_id: str
    child_id: str
    on: On
    delete_on_other: bool = False


@dataclasses.dataclass(frozen=True)
class Transition:
    """What a store did when it applied a state."""

    previous: str
    applied: StateRecord
    continuations: tuple[ContinuationRecord, ...] = ()
