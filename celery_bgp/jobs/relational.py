"""What the SQL job stores share: transition rules, typed property conditions, event placement.

The Django ORM store (``celery_bgp.contrib.django``) and the SQLAlchemy store
(``celery_bgp.contrib.sqlalchemy``) write the same tables (one schema). Each locks rows
and speaks SQL its own way; what a write *is* is decided here, once, from plain values:

- :func:`check_transition` and :func:`transition_values`: given the locked job row
  (anything with ``state``, ``sequence``, ``lock_holder``, ``lock_acquired``,
  ``lock_expires``), whether a state may be applied and the job columns that change.
  The PostgreSQL hot path (:mod:`.pgwire`) writes the same values.
- :func:`apply_events` and :func:`tail_start`: how recorded command events move a
  command job's columns and where late events go in its history.
- :func:`property_columns` and :func:`property_sides`: the typed property semantics
  (ints and floats compare as numbers, a bool is not a number, text never equals a
  number) as per-column conditions, which each store turns into its own expressions.
- :func:`like_escape` and :func:`is_deadlock`: the ``*`` wildcard per database, and
  which errors mean "retry the transaction".

Column names are the Django model's attribute names; ``order`` is stored in the
``life_order`` column of the job table.
"""
from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from ..commands import utcnow
from ..events.model import CommandEvent
from .model import JobKind, JobRecord, StateRecord
from .query import Condition, QueryError, property_value
from .store import StateConflict, state_from_event

__all__ = [
    "CHANGEABLE",
    "DEADLOCK_CODES",
    "LOCK_COLUMNS",
    "VALUE_COLUMNS",
    "apply_events",
    "check_changes",
    "check_transition",
    "free_for",
    "is_deadlock",
    "job_values",
    "like_escape",
    "property_columns",
    "property_rows",
    "property_sides",
    "state_values",
    "tail_start",
    "transition_values",
]

#: Job fields a transition may change besides its state.
CHANGEABLE = frozenset({"execution_id", "attempt", "worker", "result", "queue", "priority",
                        "options"})
LOCK_COLUMNS = ("lock_holder", "lock_acquired", "lock_heartbeat", "lock_expires")
VALUE_COLUMNS = ("value_text", "value_int", "value_float", "value_bool", "value_date")
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
FLOAT_MAX = sys.float_info.max
#: SQLSTATE / MySQL error codes of a deadlock victim or a lock wait timeout.
DEADLOCK_CODES = frozenset({"40P01", "40001", 1213, 1205})


# -- new rows ---------------------------------------------------------------------------


def job_values(job: JobRecord, sequence: int = 1) -> dict[str, Any]:
    """The columns of a new job row whose history has ``sequence`` states."""
    lock = job.lock
    return {
        "id": job.id, "name": job.name, "kind": JobKind(job.kind).value, "queue": job.queue,
        "priority": int(job.priority), "environment": job.environment, "state": job.state,
        "created": job.created, "modified": job.modified, "args": list(job.args),
        "kwargs": dict(job.kwargs), "middleware": list(job.middleware),
        "options": dict(job.options), "result": job.result, "execution_id": job.execution_id,
        "attempt": job.attempt, "worker": job.worker,
        "lock_holder": lock.holder if lock else None,
        "lock_acquired": lock.acquired if lock else None,
        "lock_heartbeat": lock.heartbeat if lock else None,
        "lock_expires": lock.expires if lock else None,
        "cancel_requested": None, "sequence": sequence, "life_order": "",
    }


def state_values(job_id: str, state: StateRecord, sequence: int,
                 life_order: str | None = None) -> dict[str, Any]:
    """A history row (``life_order``: the command event it records, if any)."""
    return {"job_id": job_id, "sequence": sequence, "name": state.name,
            "elected": state.elected, "reason": state.reason, "data": dict(state.data),
            "life_order": life_order}


def property_rows(job_id: str, properties: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The property rows of a job (typed columns: :func:`property_columns`)."""
    return [{"job_id": job_id, "name": name, **property_columns(property_value(name, value))}
            for name, value in properties.items()]


# -- transitions ------------------------------------------------------------------------


def check_changes(changes: Mapping[str, Any] | None, holder: str | None,
                  take_lock: float | None, release_lock: bool) -> dict[str, Any]:
    """Validate a transition's arguments (before any I/O); return ``changes`` as a dict."""
    if (take_lock is not None or release_lock) and holder is None:
        raise ValueError("take_lock and release_lock need a holder")
    changes = dict(changes or {})
    unknown = set(changes) - CHANGEABLE
    if unknown:
        raise ValueError(f"cannot change {sorted(unknown)} in a transition")
    return changes


def free_for(lock_holder: str | None, lock_expires: datetime | None, holder: str,
             now: datetime) -> bool:
    """True if ``holder`` may take (or keep) a lock held by ``lock_holder``."""
    return (lock_holder is None or lock_holder == holder or lock_expires is None
            or lock_expires < now)


def check_transition(job_id: str, row: Any, state: StateRecord,
                     expected: Collection[str] | None, holder: str | None) -> None:
    """Raise :class:`StateConflict` unless ``state`` may be applied to the locked ``row``."""
    if expected is not None and row.state not in expected:
        raise StateConflict(f"job {job_id} is {row.state}, expected one of {sorted(expected)}")
    if holder is not None and not free_for(row.lock_holder, row.lock_expires, holder,
                                           state.elected):
        raise StateConflict(f"job {job_id} is locked by {row.lock_holder}")


def transition_values(row: Any, state: StateRecord, *, holder: str | None,
                      changes: Mapping[str, Any], take_lock: float | None,
                      release_lock: bool) -> tuple[StateRecord, dict[str, Any]]:
    """The state as applied (numbered) and the job columns a transition writes."""
    applied = dataclasses.replace(state, sequence=row.sequence + 1)
    update: dict[str, Any] = {"state": state.name, "modified": state.elected,
                              "sequence": applied.sequence, "order": "", **changes}
    if state.name == "Enqueued":
        update["cancel_requested"] = None  # a cancel request is per execution
    if take_lock is not None:
        now = utcnow()
        keep = row.lock_holder == holder and row.lock_acquired is not None
        update.update(lock_holder=holder, lock_heartbeat=now,
                      lock_acquired=row.lock_acquired if keep else now,
                      lock_expires=now + timedelta(seconds=take_lock))
    elif release_lock and row.lock_holder == holder:
        update.update(dict.fromkeys(LOCK_COLUMNS))
    return applied, update


# -- command events ---------------------------------------------------------------------


def apply_events(row: Any, events: Iterable[CommandEvent]) -> dict[str, Any]:
    """The column updates of a command job ``row`` once ``events`` (new ones) are recorded.

    The current state is the newest by life order (``order_text``), whatever order
    the writes land in; ``created`` is the earliest event seen. The history rows and
    ``sequence`` are the store's business.
    """
    update: dict[str, Any] = {}
    order = row.order
    for event in events:
        if event.command is not None and not row.args and "args" not in update:
            update["args"] = [event.command]
        if event.queue and not row.queue and "queue" not in update:
            update["queue"] = event.queue
        if event.timestamp < update.get("created", row.created):
            update["created"] = event.timestamp
        if event.order_text > order:
            order = event.order_text
            update.update(state=state_from_event(event).name, modified=event.timestamp,
                          order=order)
            if event.worker:
                update["worker"] = event.worker
    return update


def tail_start(recorded: Mapping[str, int], fresh: Iterable[CommandEvent]) -> int | None:
    """Where new events go: None to append them (in life order) after the history, or
    the sequence from which the recorded rows must be rewritten with them, because
    some recorded event comes later in the command's life (a late write)."""
    first = min(event.order_text for event in fresh)
    later = [sequence for order, sequence in recorded.items() if order > first]
    return min(later) if later else None


# -- typed properties -------------------------------------------------------------------


def property_columns(value: Any) -> dict[str, Any]:
    """The ``value_*`` columns that store ``value`` (all five, unused ones None)."""
    columns: dict[str, Any] = dict.fromkeys(VALUE_COLUMNS)
    if isinstance(value, bool):
        columns["value_bool"] = value
    elif isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise QueryError(f"int property {value} does not fit in 64 bits")
        columns["value_int"] = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise QueryError("a float property must be finite")
        columns["value_float"] = value
    elif isinstance(value, str):
        columns["value_text"] = value
    elif isinstance(value, datetime):
        columns["value_date"] = value
    else:  # property_value() ran first; this is a programming error
        raise QueryError(f"not a property type: {type(value).__name__}")
    return columns


#: One condition on one value column: (op, value); op is a query operator or "notnull".
Side = tuple[str, Any]


def property_sides(conditions: list[Condition]) -> dict[str, list[Side]]:
    """All ``conditions`` on one property's value, as and-ed conditions per value column.

    The property matches if the conditions of any one column all hold (the dict is
    or-ed over columns; empty: nothing matches). A property fills exactly one value
    column, so ``(int a | float a) & (int b | float b)`` equals ``(int a & int b) |
    (float a & float b)``, which indexes serve. A float compared with the int column
    becomes the equivalent integer bound (``x < 15.5`` is ``x < 16``), so both sides of
    a numeric comparison stay exact and indexable.
    """
    sides: dict[str, list[Side]] | None = None
    for condition in conditions:
        found = _sides(condition.op, condition.value)
        sides = found if sides is None else {
            column: sides[column] + found[column] for column in sides if column in found}
    return sides or {}


def _sides(op: str, value: Any) -> dict[str, list[Side]]:
    if op == "in":
        return _sides_in(value)
    if isinstance(value, bool):
        return {"value_bool": [(op, value)]}
    if isinstance(value, (int, float)):
        sides = {"value_int": _int_side(op, value), "value_float": _float_side(op, value)}
        return {column: [side] for column, side in sides.items() if side is not None}
    if isinstance(value, str):
        return {"value_text": [(op, value)]}
    return {"value_date": [(op, value)]}


def _sides_in(values: Iterable[Any]) -> dict[str, list[Side]]:
    by_column: dict[str, list[Any]] = {column: [] for column in VALUE_COLUMNS}
    for value in values:
        if isinstance(value, bool):
            by_column["value_bool"].append(value)
        elif isinstance(value, (int, float)):
            as_int = _exact_int(value)
            if as_int is not None:
                by_column["value_int"].append(as_int)
            if abs(value) <= FLOAT_MAX:
                by_column["value_float"].append(float(value))
        elif isinstance(value, str):
            by_column["value_text"].append(value)
        else:
            by_column["value_date"].append(value)
    return {column: [("in", items)] for column, items in by_column.items() if items}


def _exact_int(value: int | float) -> int | None:
    """``value`` as a storable int if it equals one, else None."""
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return None
        value = int(value)
    return value if INT_MIN <= value <= INT_MAX else None


def _bounded(op: str, value: int | float, low: float, high: float) -> Side | None:
    """``<op> value`` on a column whose values all lie in [low, high]; None if no value
    can match, ``notnull`` if every value does."""
    if value < low or value > high:
        below = value < low  # every stored value is above ``value``
        if (op in ("gt", "gte") and below) or (op in ("lt", "lte") and not below):
            return ("notnull", None)
        return None
    return (op, value)


def _int_side(op: str, value: int | float) -> Side | None:
    if isinstance(value, float) and math.isfinite(value) and not value.is_integer():
        if op == "eq":
            return None
        # For an int x: x < 15.5 <=> x < 16, x <= 15.5 <=> x <= 15, and so on.
        value = math.ceil(value) if op in ("lt", "gte") else math.floor(value)
    elif isinstance(value, float) and math.isfinite(value):
        value = int(value)
    return _bounded(op, value, INT_MIN, INT_MAX)


def _float_side(op: str, value: int | float) -> Side | None:
    if isinstance(value, int) and abs(value) <= FLOAT_MAX:
        value = float(value)
    return _bounded(op, value, -FLOAT_MAX, FLOAT_MAX)


# -- dialects ---------------------------------------------------------------------------


def like_escape(pattern: str, vendor: str) -> str:
    """Turn a ``*`` pattern into the vendor's LIKE (or, on SQLite, GLOB) pattern.

    SQLite: GLOB (case-sensitive), where ``[x]`` quotes a character. Elsewhere LIKE
    with ``\\`` as the escape character (MySQL's default; PostgreSQL says ``ESCAPE``).
    """
    if vendor == "sqlite":
        return pattern.replace("[", "[[]").replace("?", "[?]")
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def is_deadlock(error: BaseException | None) -> bool:
    """True if a DB-API error is a deadlock victim or a lock wait timeout (retry it)."""
    code = getattr(error, "sqlstate", None)
    if code is None and error is not None and error.args:
        code = error.args[0]
    return code in DEADLOCK_CODES
