"""PostgreSQL: a job's hot path (create, read, transition) in plain SQL, for the SQL stores.

Every job is created once, read once by its worker, and crosses two transitions there
(Executing, then its final state), so their round trips bound the engine's throughput.
With psycopg 3's client-side binding (``psycopg.ClientCursor``; Django's default) and
the connection in autocommit, a transition is two round trips: ``BEGIN; SET LOCAL
...; SELECT ... FOR NO KEY UPDATE``, then, after the checks in Python
(:func:`~.relational.check_transition`), ``INSERT; UPDATE; SELECT continuations;
COMMIT`` (or ROLLBACK when a check fails). A new job's row, first states and properties
are one multi-statement string, which PostgreSQL runs as one implicit transaction.

The rules are the stores' general path: the job row is locked before anything is read,
the continuations are read by a statement that starts after the lock is held (a fresh
snapshot in READ COMMITTED, so a continuation attached just before is seen), and the
written values are :func:`~.relational.transition_values`. Used by the Django store
(``contrib/django/pgfast.py``) and the SQLAlchemy store, only for their own
transactions: inside a caller's transaction they take their general path.
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from .model import ContinuationRecord, On, StateRecord, Transition
from .relational import check_transition, transition_values
from .store import JobNotFound

__all__ = ["JOB_COLUMNS", "LockedRow", "insert", "lock_row", "rollback", "write"]

JOB = "celery_bgp_job"
STATE = "celery_bgp_jobstate"
PROPERTY = "celery_bgp_jobproperty"
CONTINUATION = "celery_bgp_continuation"
#: The job table's columns, in the order :data:`GET_SQL` selects them.
JOB_COLUMNS = (
    "id", "name", "kind", "queue", "priority", "environment", "state", "created",
    "modified", "args", "kwargs", "middleware", "options", "result", "execution_id",
    "attempt", "worker", "lock_holder", "lock_acquired", "lock_heartbeat", "lock_expires",
    "cancel_requested", "sequence", "life_order",
)
JSON_COLUMNS = frozenset({"args", "kwargs", "middleware", "options", "result", "data",
                          "value"})
_SELECTED = ", ".join(f'"{column}"' for column in JOB_COLUMNS)
GET_SQL = f'SELECT {_SELECTED} FROM "{JOB}" WHERE id = %s'
_LOCK_SQL = (
    f'SELECT state, sequence, lock_holder, lock_acquired, lock_expires FROM "{JOB}" '
    "WHERE id = %s FOR NO KEY UPDATE"
)


def _column(name: str) -> str:
    return "life_order" if name == "order" else name


def _placeholder(column: str, value: Any, params: list[Any]) -> str:
    if value is None:
        return "NULL"
    if column in JSON_COLUMNS:
        params.append(json.dumps(value))
        return "%s::jsonb"
    params.append(value)
    return "%s"


def _values(row: Mapping[str, Any], params: list[Any]) -> str:
    return "(" + ", ".join(_placeholder(c, v, params) for c, v in row.items()) + ")"


def _insert_sql(table: str, rows: Sequence[Mapping[str, Any]], params: list[Any]) -> str:
    columns = ", ".join(f'"{_column(c)}"' for c in rows[0])
    return f'INSERT INTO "{table}" ({columns}) VALUES ' + ", ".join(
        _values(row, params) for row in rows)


def insert(cursor: Any, job: Mapping[str, Any], states: Sequence[Mapping[str, Any]],
           properties: Sequence[Mapping[str, Any]]) -> None:
    """INSERT a job row, its first states and properties (column -> Python value, JSON
    columns as Python data): one round trip, one implicit transaction."""
    params: list[Any] = []
    statements = [_insert_sql(JOB, [job], params), _insert_sql(STATE, states, params)]
    if properties:
        statements.append(_insert_sql(PROPERTY, properties, params))
    cursor.execute("; ".join(statements), params)


class LockedRow:
    """The columns of the locked job row that a transition's checks read."""

    __slots__ = ("lock_acquired", "lock_expires", "lock_holder", "sequence", "state")

    def __init__(self, state: str, sequence: int, lock_holder: str | None,
                 lock_acquired: Any, lock_expires: Any) -> None:
        self.state, self.sequence, self.lock_holder = state, sequence, lock_holder
        self.lock_acquired, self.lock_expires = lock_acquired, lock_expires


def lock_row(cursor: Any, job_id: str, durable: bool) -> LockedRow | None:
    """Open a transaction and lock the job row (when not ``durable``, its commit will
    not wait for the WAL flush). The caller ends it with :func:`write` or
    :func:`rollback`."""
    if durable:
        cursor.execute("BEGIN; " + _LOCK_SQL, [job_id])
        cursor.nextset()
    else:
        cursor.execute("BEGIN; SET LOCAL synchronous_commit TO OFF; " + _LOCK_SQL, [job_id])
        cursor.nextset()
        cursor.nextset()
    found = cursor.fetchone()
    return LockedRow(*found) if found else None


def rollback(cursor: Any) -> None:
    """End the transaction :func:`lock_row` opened, changing nothing."""
    cursor.execute("ROLLBACK")


def write(cursor: Any, job_id: str, row: LockedRow, state: StateRecord, *,
          holder: str | None, changes: Mapping[str, Any], take_lock: float | None,
          release_lock: bool, continuations: bool
          ) -> tuple[StateRecord, list[ContinuationRecord]]:
    """Append the state, update the job row, read its continuations, COMMIT: one round
    trip. Returns the applied state (numbered) and the continuations."""
    applied, update = transition_values(row, state, holder=holder, changes=changes,
                                        take_lock=take_lock, release_lock=release_lock)
    params: list[Any] = [job_id, applied.sequence, state.name, state.elected, state.reason,
                         json.dumps(dict(state.data))]
    assignments = ", ".join(f'"{_column(name)}" = {_placeholder(name, value, params)}'
                            for name, value in update.items())
    params.append(job_id)
    sql = (
        f'INSERT INTO "{STATE}" (job_id, sequence, name, elected, reason, data) '
        "VALUES (%s, %s, %s, %s, %s, %s::jsonb); "
        f'UPDATE "{JOB}" SET {assignments} WHERE id = %s'
    )
    if continuations:
        sql += (f'; SELECT parent_id, child_id, "on", delete_on_other FROM "{CONTINUATION}" '
                "WHERE parent_id = %s ORDER BY id")
        params.append(job_id)
    cursor.execute(sql + "; COMMIT", params)
    found: list[ContinuationRecord] = []
    if continuations:
        cursor.nextset()
        cursor.nextset()
        found = [ContinuationRecord(parent, child, On.parse(on) if on else On(0), delete)
                 for parent, child, on, delete in cursor.fetchall()]
    return applied, found


def transition(cursor: Any, job_id: str, state: StateRecord, *,
               expected: Collection[str] | None, holder: str | None,
               changes: Mapping[str, Any], take_lock: float | None, release_lock: bool,
               continuations: bool, durable: bool) -> Transition:
    """A store's ``transition`` in two round trips: lock, check, write (or roll back)."""
    row = lock_row(cursor, job_id, durable)
    try:
        if row is None:
            raise JobNotFound(f"no job {job_id}")
        check_transition(job_id, row, state, expected, holder)
        applied, found = write(cursor, job_id, row, state, holder=holder, changes=changes,
                               take_lock=take_lock, release_lock=release_lock,
                               continuations=continuations)
    except BaseException:
        with contextlib.suppress(Exception):  # a broken connection rolls back too
            rollback(cursor)
        raise
    return Transition(row.state, applied, tuple(found))
