"""Conversions between the job tables' rows (plain mappings) and the store's records."""
from __future__ import annotations

import types
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from celery_bgp.events.model import CommandEvent
from celery_bgp.jobs.model import (
    ContinuationRecord,
    JobKind,
    JobRecord,
    LockInfo,
    LogRecord,
    On,
    StateRecord,
)
from celery_bgp.jobs.relational import job_values, state_values
from celery_bgp.jobs.store import state_from_event
from celery_bgp.priority import Priority

__all__ = [
    "command_values",
    "continuation_record",
    "event_state",
    "job_record",
    "job_values",
    "log_record",
    "row_view",
    "state_record",
    "state_values",
    "stored_property",
]


def _utc(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(timezone.utc)
    return value


def job_record(row: Mapping[str, Any]) -> JobRecord:
    """The plain record of a job row (column name -> value)."""
    lock = None
    if row["lock_holder"] is not None:
        lock = LockInfo(row["lock_holder"], _utc(row["lock_acquired"]),
                        _utc(row["lock_heartbeat"]), _utc(row["lock_expires"]))
    return JobRecord(
        id=row["id"], name=row["name"], kind=JobKind(row["kind"]), queue=row["queue"],
        priority=row["priority"], environment=row["environment"], state=row["state"],
        created=_utc(row["created"]), modified=_utc(row["modified"]), args=row["args"],
        kwargs=row["kwargs"], middleware=row["middleware"], options=row["options"],
        execution_id=row["execution_id"], attempt=row["attempt"], worker=row["worker"],
        result=row["result"], lock=lock,
    )


def command_values(first: CommandEvent, environment: str) -> dict[str, Any]:
    """The row a command's first recorded event creates (events then update it)."""
    return {
        "id": first.command_id, "name": first.command_name or "?",
        "kind": JobKind.COMMAND.value, "queue": first.queue or "",
        "priority": int(Priority.NORMAL), "environment": environment,
        "state": state_from_event(first).name, "created": first.timestamp,
        "modified": first.timestamp, "args": [], "kwargs": {}, "middleware": [],
        "options": {}, "result": None, "execution_id": None, "attempt": 0, "worker": None,
        "lock_holder": None, "lock_acquired": None, "lock_heartbeat": None,
        "lock_expires": None, "cancel_requested": None, "sequence": 0, "life_order": "",
    }


def event_state(job_id: str, event: CommandEvent) -> dict[str, Any]:
    """A history row recording ``event`` (its sequence is set when placed)."""
    return state_values(job_id, state_from_event(event), 0, event.order_text)


def state_record(row: Mapping[str, Any]) -> StateRecord:
    return StateRecord(row["name"], _utc(row["elected"]), row["reason"], row["data"] or {},
                       row["sequence"])


def log_record(row: Mapping[str, Any]) -> LogRecord:
    return LogRecord(row["level"], row["message"], _utc(row["time"]), row["exception"])


def continuation_record(row: Mapping[str, Any]) -> ContinuationRecord:
    on = On.parse(row["on"]) if row["on"] else On(0)
    return ContinuationRecord(row["parent_id"], row["child_id"], on,
                              bool(row["delete_on_other"]))


def stored_property(row: Mapping[str, Any]) -> Any:
    """The Python value of a property row, from whichever column holds it."""
    for column in ("value_bool", "value_int", "value_float", "value_date", "value_text"):
        found = row[column]
        if found is not None:
            return bool(found) if column == "value_bool" else _utc(found)
    return None


def row_view(row: Mapping[str, Any]) -> Any:
    """A job row with attribute access, ``order`` for ``life_order`` (what
    :mod:`celery_bgp.jobs.relational` reads)."""
    return types.SimpleNamespace(**row, order=row["life_order"])

