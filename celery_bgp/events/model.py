"""The command event: what happened to a command, when, and with which error.

Events are ordered by the command's life, not by when a write landed: the later
requeue first (a command re-dispatched by hand keeps its id), then the later Celery
attempt (a retry's next attempt can start in another process before the RETRYING
event of the previous one is written), then the newest timestamp, and on equal
timestamps the later stage of the life (the seed's "timestamp desc, then status
desc").
"""
from __future__ import annotations

import dataclasses
import enum
import json
import traceback as tb_module
from datetime import datetime, timezone
from typing import Any

import pydantic_core

__all__ = ["CommandEvent", "ErrorInfo", "EventStatus", "event_problem", "life_order",
           "newest_first"]

#: Largest retry / requeue count an event may carry (six digits of its life order).
MAX_COUNT = 999_999


class EventStatus(str, enum.Enum):
    """Stages of a command's life. Stored by name."""

    DISPATCHED = "DISPATCHED"
    PROCESSING = "PROCESSING"
    RETRYING = "RETRYING"
    PROCESSED = "PROCESSED"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"

    @property
    def rank(self) -> int:
        """Position in the life; breaks timestamp ties (higher = later)."""
        return _RANK[self]

    @property
    def is_final(self) -> bool:
        """True for PROCESSED, ERROR and CANCELLED."""
        return self in (EventStatus.PROCESSED, EventStatus.ERROR, EventStatus.CANCELLED)

    def __str__(self) -> str:
        return self.value


_RANK = {status: i for i, status in enumerate(EventStatus, start=1)}


@dataclasses.dataclass(frozen=True)
class ErrorInfo:
    """An exception as data: type (qualified), message and formatted traceback."""

    type: str
    message: str
    traceback: str | None = None

    @classmethod
    def from_exception(cls, exc: BaseException, traceback: Any = None) -> ErrorInfo:
        """Build from an exception; ``traceback`` may be a traceback object or text."""
        exc_type = type(exc)
        name = exc_type.__qualname__
        if exc_type.__module__ not in ("builtins", "__main__"):
            name = f"{exc_type.__module__}.{name}"
        if traceback is None:
            traceback = exc.__traceback__
        if traceback is not None and not isinstance(traceback, str):
            traceback = "".join(tb_module.format_exception(exc_type, exc, traceback))
        return cls(type=name, message=str(exc), traceback=traceback or None)


@dataclasses.dataclass(frozen=True)
class CommandEvent:
    """One step in a command's life.

    ``command`` (the JSON payload) is carried by DISPATCHED, and by PROCESSING when
    no celery-bgp dispatcher recorded a DISPATCHED (a message sent by other means);
    the others name the command only, to keep the store small.
    """

    command_id: str
    status: EventStatus
    timestamp: datetime
    command_name: str | None = None
    command: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    worker: str | None = None
    retries: int = 0
    reason: str | None = None
    queue: str | None = None
    requeues: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.status, EventStatus):
            object.__setattr__(self, "status", EventStatus(self.status))
        if self.timestamp.tzinfo is None:
            raise ValueError("CommandEvent.timestamp must be timezone-aware")

    @classmethod
    def trusted(cls, **values: Any) -> CommandEvent:
        """An event from fields its caller built well-typed (a status member, an aware
        timestamp): without ``__init__``'s per-field frozen writes and checks. The
        worker's receivers build two per command; the recorder still checks every
        event (:func:`event_problem`) before a store sees it."""
        event = object.__new__(cls)
        event.__dict__.update(_DEFAULTS)
        event.__dict__.update(values)
        return event

    @staticmethod
    def fields_with(**values: Any) -> dict[str, Any]:
        """Every field's default, then ``values``: what :meth:`trusted_over` starts from."""
        return {**_DEFAULTS, **values}

    @classmethod
    def trusted_over(cls, common: dict[str, Any], values: dict[str, Any]) -> CommandEvent:
        """:meth:`trusted` from the fields that events of one request share
        (:meth:`fields_with`, made once per request) and this event's own ``values``."""
        event = object.__new__(cls)
        fields = event.__dict__
        fields.update(common)
        fields.update(values)
        return event

    @property
    def sort_key(self) -> tuple[int, int, datetime, int]:
        """Key for oldest-first order (requeue, attempt, time, stage); reverse for newest first."""
        return (self.requeues, self.retries, self.timestamp, self.status.rank)

    @property
    def order_text(self) -> str:
        """:attr:`sort_key` as fixed-width text that sorts the same (for SQL columns).

        It also names the event: two events of one command with the same text are the
        same event (same requeue, attempt, stage and microsecond), so a store keeps
        one row per text (a write retried or made twice is not a second event).
        """
        return life_order(self.requeues, self.retries, self.timestamp, self.status)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (timestamps as ISO 8601 in UTC)."""
        data: dict[str, Any] = {
            "command_id": self.command_id,
            "status": self.status.value,
            "timestamp": self.timestamp.astimezone(timezone.utc).isoformat(),
        }
        for name in ("command_name", "command", "worker", "reason", "queue"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        if self.retries:
            data["retries"] = self.retries
        if self.requeues:
            data["requeues"] = self.requeues
        if self.error is not None:
            data["error"] = dataclasses.asdict(self.error)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CommandEvent:
        """Inverse of :meth:`to_dict`; ValueError/TypeError/KeyError on malformed data."""
        if not isinstance(data, dict):
            raise ValueError(f"a stored event is a JSON object, not {type(data).__name__}")
        error = data.get("error")
        if error is not None and not isinstance(error, dict):
            raise ValueError("a stored event's error is a JSON object")
        return cls(
            command_id=data["command_id"],
            status=EventStatus(data["status"]),
            timestamp=datetime.fromisoformat(data["timestamp"]),
            command_name=data.get("command_name"),
            command=data.get("command"),
            error=ErrorInfo(**error) if error else None,
            worker=data.get("worker"),
            retries=int(data.get("retries", 0)),
            reason=data.get("reason"),
            queue=data.get("queue"),
            requeues=int(data.get("requeues", 0)),
        )

    def to_json(self) -> str:
        """Compact JSON text of :meth:`to_dict`."""
        return self.to_json_bytes().decode()

    def to_json_bytes(self) -> bytes:
        """:meth:`to_json` as UTF-8 bytes, for stores that send bytes (Redis).

        pydantic-core's encoder: about seven times faster than :func:`json.dumps` on
        an event with a payload, and a worker encodes two events per command.
        """
        return pydantic_core.to_json(self.to_dict())

    @classmethod
    def from_json(cls, text: str | bytes) -> CommandEvent:
        """Inverse of :meth:`to_json`."""
        try:
            data = json.loads(text)
        except RecursionError:
            raise ValueError("stored event text is nested too deeply") from None
        return cls.from_dict(data)


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(CommandEvent)
             if f.default is not dataclasses.MISSING}


def life_order(requeues: int, retries: int, timestamp: datetime, status: EventStatus) -> str:
    """:attr:`CommandEvent.order_text` from its parts (a stored state has them too)."""
    stamp = timestamp.astimezone(timezone.utc).strftime("%Y%m%d%H%M%S%f")
    return f"{requeues:06d}{retries:06d}{stamp}{EventStatus(status).rank:02d}"


def event_problem(event: Any) -> str | None:
    """Why no store can hold ``event`` as it is, or ``None`` when it is well-formed.

    The recorder asks before writing, so one malformed event (an integer command id
    from a hand-made message, say) is quarantined alone instead of failing the batch
    it shares with good events. The answer names the field and the type, never the
    value, so it can serve as a counter's key.
    """
    if not isinstance(event, CommandEvent):
        return f"not a CommandEvent but a {type(event).__name__}"
    if _well_formed(event):  # what the receivers build: checked in one expression
        return None
    command_id = event.command_id
    if not isinstance(command_id, str) or not command_id:
        return f"command_id is a {_kind(command_id)}, not a non-empty string"
    if not isinstance(event.status, EventStatus):
        return f"status is a {_kind(event.status)}, not an EventStatus"
    stamp = event.timestamp
    if not isinstance(stamp, datetime) or stamp.tzinfo is None:
        return "timestamp is not a timezone-aware datetime"
    for name in ("command_name", "worker", "reason", "queue"):
        value = getattr(event, name)
        if value is not None and not isinstance(value, str):
            return f"{name} is a {_kind(value)}, not a string"
    for name in ("retries", "requeues"):
        value = getattr(event, name)
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{name} is a {_kind(value)}, not an integer"
        if not 0 <= value <= MAX_COUNT:
            return f"{name} is out of range (0 to {MAX_COUNT})"
    if event.command is not None and not isinstance(event.command, dict):
        return f"command is a {_kind(event.command)}, not a JSON object"
    if event.error is not None and not isinstance(event.error, ErrorInfo):
        return f"error is a {_kind(event.error)}, not an ErrorInfo"
    return None


_STR_OR_NONE = (str, type(None))


def _well_formed(event: CommandEvent) -> bool:
    """The common case of :func:`event_problem`, cheap: every field of its usual type."""
    return (
        type(event.command_id) is str and event.command_id != ""
        and type(event.status) is EventStatus
        and type(event.timestamp) is datetime and event.timestamp.tzinfo is not None
        and isinstance(event.command_name, _STR_OR_NONE)
        and isinstance(event.worker, _STR_OR_NONE)
        and isinstance(event.reason, _STR_OR_NONE)
        and isinstance(event.queue, _STR_OR_NONE)
        and type(event.retries) is int and 0 <= event.retries <= MAX_COUNT
        and type(event.requeues) is int and 0 <= event.requeues <= MAX_COUNT
        and (event.command is None or type(event.command) is dict)
        and (event.error is None or type(event.error) is ErrorInfo)
    )


def _kind(value: Any) -> str:
    return "empty string" if value == "" else type(value).__name__


def newest_first(events: list[CommandEvent]) -> list[CommandEvent]:
    """Sort events newest first, later life stage first on equal timestamps."""
    return sorted(events, key=lambda e: e.sort_key, reverse=True)
