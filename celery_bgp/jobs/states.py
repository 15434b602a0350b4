"""Job states (HiveMind's, plus Retrying and Cancelled) and the allowed transitions.

A state is a small dataclass: its name, the data it carries (the duration and
result of Succeeded, the exception of Failed ...) and a reason. Users add states by
subclassing :class:`State` and allowing transitions to and from it.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any, ClassVar

from ..commands import utcnow
from ..exceptions import ImproperlyConfigured
from .model import StateRecord

__all__ = [
    "FINAL_STATES",
    "Awaiting",
    "Cancelled",
    "Created",
    "Deleted",
    "Enqueued",
    "Executing",
    "Failed",
    "Idle",
    "Retrying",
    "State",
    "StateRegistry",
    "Succeeded",
]


@dataclasses.dataclass(kw_only=True)
class State:
    """Base of all states. Subclasses are dataclasses; their fields are the state data."""

    name: ClassVar[str] = "State"
    #: A job in a final state runs no more unless moved by hand (requeue).
    final: ClassVar[bool] = False

    reason: str | None = None

    def record(self, when: datetime | None = None) -> StateRecord:
        """The :class:`StateRecord` to store for this state (transient fields left out)."""
        data = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name != "reason" and not f.metadata.get("transient")
        }
        return StateRecord(self.name, when or utcnow(), self.reason, _jsonable(data))


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in data.items()}


@dataclasses.dataclass(kw_only=True)
class Created(State):
    name: ClassVar[str] = "Created"


@dataclasses.dataclass(kw_only=True)
class Idle(State):
    """Stored, not queued: waits to be enqueued by hand."""

    name: ClassVar[str] = "Idle"


@dataclasses.dataclass(kw_only=True)
class Enqueued(State):
    """Sent to the broker; ``delay_until`` when delayed."""

    name: ClassVar[str] = "Enqueued"
    delay_until: datetime | None = None

    def __post_init__(self) -> None:
        # Stored in UTC: stores compare it in SQL (the stalled-job sweep), and MySQL
        # reads no UTC offset.
        if self.delay_until is not None and self.delay_until.tzinfo is not None:
            self.delay_until = self.delay_until.astimezone(timezone.utc)


@dataclasses.dataclass(kw_only=True)
class Awaiting(State):
    """Waits for a parent job to reach one of the ``on`` states."""

    name: ClassVar[str] = "Awaiting"
    parent_id: str
    on: str
    delete_on_other: bool = False


@dataclasses.dataclass(kw_only=True)
class Executing(State):
    name: ClassVar[str] = "Executing"
    worker: str
    execution_id: str
    attempt: int = 1


@dataclasses.dataclass(kw_only=True)
class Succeeded(State):
    name: ClassVar[str] = "Succeeded"
    final: ClassVar[bool] = True
    duration: float = 0.0
    result: Any = None


@dataclasses.dataclass(kw_only=True)
class Failed(State):
    name: ClassVar[str] = "Failed"
    final: ClassVar[bool] = True
    exception_type: str = ""
    message: str = ""
    traceback: str | None = None
    attempt: int = 1
    #: The exception itself, for election handlers (retry policies); not stored.
    exception: BaseException | None = dataclasses.field(
        default=None, repr=False, compare=False, metadata={"transient": True}
    )

    @classmethod
    def from_exception(cls, exc: BaseException, attempt: int = 1, **kw: Any) -> Failed:
        """A Failed state describing ``exc``."""
        from ..events.model import ErrorInfo

        info = ErrorInfo.from_exception(exc)
        return cls(exception_type=info.type, message=info.message, traceback=info.traceback,
                   attempt=attempt, exception=exc, **kw)


@dataclasses.dataclass(kw_only=True)
class Retrying(State):
    """Failed, to be enqueued again after ``delay`` seconds (the retry policy said so)."""

    name: ClassVar[str] = "Retrying"
    attempt: int
    delay: float
    exception_type: str = ""
    message: str = ""


@dataclasses.dataclass(kw_only=True)
class Deleted(State):
    name: ClassVar[str] = "Deleted"
    final: ClassVar[bool] = True


@dataclasses.dataclass(kw_only=True)
class Cancelled(State):
    """Cancelled by a user while enqueued or running."""

    name: ClassVar[str] = "Cancelled"
    final: ClassVar[bool] = True


BUILTIN_STATES = (Created, Idle, Enqueued, Awaiting, Executing, Succeeded, Failed,
                  Retrying, Deleted, Cancelled)
FINAL_STATES = frozenset(s.name for s in BUILTIN_STATES if s.final)

_DEFAULT_TRANSITIONS = {
    # Failed from every waiting state: an election handler may fail a job before it runs.
    "Created": {"Enqueued", "Awaiting", "Idle", "Deleted", "Cancelled", "Failed"},
    "Idle": {"Enqueued", "Deleted", "Awaiting", "Cancelled", "Failed"},
    "Awaiting": {"Enqueued", "Deleted", "Idle", "Cancelled", "Failed"},
    "Enqueued": {"Executing", "Enqueued", "Deleted", "Cancelled", "Idle", "Failed"},
    "Executing": {"Succeeded", "Failed", "Retrying", "Cancelled", "Enqueued", "Deleted"},
    "Retrying": {"Enqueued", "Deleted", "Failed", "Cancelled"},
    "Succeeded": {"Enqueued", "Deleted"},
    "Failed": {"Enqueued", "Deleted"},
    "Cancelled": {"Enqueued", "Deleted"},
    "Deleted": {"Enqueued"},
}


class StateRegistry:
    """Known states and allowed transitions; one per jobs instance, extensible."""

    def __init__(self) -> None:
        self._states: dict[str, type[State]] = {s.name: s for s in BUILTIN_STATES}
        self._allowed = {k: set(v) for k, v in _DEFAULT_TRANSITIONS.items()}

    def register(self, state: type[State], *, from_states: Iterable[str] = (),
                 to_states: Iterable[str] = ()) -> type[State]:
        """Add a custom state and the transitions into and out of it."""
        if not (isinstance(state, type) and issubclass(state, State)) or state.name == "State":
            raise ImproperlyConfigured("a custom state subclasses State and sets a name")
        self._states[state.name] = state
        self._allowed.setdefault(state.name, set())
        for source in from_states:
            self.allow(source, state.name)
        for target in to_states:
            self.allow(state.name, target)
        return state

    def allow(self, source: str, target: str) -> None:
        """Allow moving from ``source`` to ``target``."""
        for name in (source, target):
            if name not in self._states:
                raise ImproperlyConfigured(f"unknown state {name!r}; register it first")
        self._allowed.setdefault(source, set()).add(target)

    def is_allowed(self, source: str, target: str) -> bool:
        return target in self._allowed.get(source, ())

    def sources_of(self, target: str) -> set[str]:
        """States from which ``target`` may be applied."""
        return {s for s, targets in self._allowed.items() if target in targets}

    def is_final(self, name: str) -> bool:
        state = self._states.get(name)
        return bool(state and state.final)

    def __contains__(self, name: object) -> bool:
        return name in self._states

    @property
    def names(self) -> list[str]:
        return list(self._states)
