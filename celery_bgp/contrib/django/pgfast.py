"""PostgreSQL: a job's hot path (create, read, transition) in plain SQL.

Every job is created once, read once by its worker, and crosses two transitions there
(Executing, then its final state), so their cost bounds the engine's throughput; the
ORM's SQL compilation and model building cost more than the round trips themselves
(a read by primary key: 1.3 ms through the ORM, 0.44 ms here). Values are prepared
and converted by the model fields themselves, as the ORM does.

A transition through the ORM costs seven round trips (BEGIN, SET LOCAL, SELECT ...
FOR NO KEY UPDATE, INSERT, UPDATE, SELECT continuations, COMMIT) and the SQL
compilation of each. Here, with psycopg 3's client-side binding (Django's default) and
the connection in autocommit, it is two: ``BEGIN; SET LOCAL ...; SELECT ... FOR NO KEY
UPDATE``, then, after the checks in Python, ``INSERT; UPDATE; SELECT continuations;
COMMIT`` (or ROLLBACK when a check fails). A new job's row, first states and properties
are one multi-statement string, which PostgreSQL runs as one implicit transaction.

The rules are the ORM path's (:meth:`DjangoJobStore.transition`): the job row is locked
before anything is read, the continuations are read by a statement that starts after
the lock is held (a fresh snapshot in READ COMMITTED, so a continuation attached just
before is seen), and the checks run in Python on the locked row. Used only for the
store's own transactions; inside a caller's ``atomic()`` the ORM path runs.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from celery_bgp.commands import utcnow
from celery_bgp.jobs.model import ContinuationRecord, On, StateRecord

from .models import Continuation, Job, JobProperty, JobState
from .records import job_record

__all__ = ["available", "get", "insert", "lock_row", "write"]

_JSON_COLUMNS = frozenset({"result", "options"})


def available(connection: Any) -> bool:
    """True on PostgreSQL with psycopg 3 and client-side binding, outside a transaction."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return False
    if not connection.get_autocommit():
        return False
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return is_psycopg3 and not connection.settings_dict.get("OPTIONS", {}).get(
        "server_side_binding")


def _column(name: str) -> str:
    return Job._meta.get_field(name).column


_JOB = Job._meta.db_table
_STATE = JobState._meta.db_table
_CONTINUATION = Continuation._meta.db_table
_LOCK_SQL = (
    f'SELECT state, sequence, lock_holder, lock_acquired, lock_expires FROM "{_JOB}" '
    "WHERE id = %s FOR NO KEY UPDATE"
)


_JOB_FIELDS = tuple(Job._meta.concrete_fields)
_STATE_FIELDS = tuple(f for f in JobState._meta.concrete_fields if not f.primary_key)
_PROPERTY_FIELDS = tuple(f for f in JobProperty._meta.concrete_fields if not f.primary_key)


def _columns(fields: tuple[Any, ...]) -> str:
    return ", ".join(f'"{f.column}"' for f in fields)


_GET_SQL = f'SELECT {_columns(_JOB_FIELDS)} FROM "{_JOB}" WHERE id = %s'


class _Row:
    """Attribute access to one selected job row, as :func:`.records.job_record` reads it."""

    def __init__(self, values: tuple[Any, ...], connection: Any) -> None:
        for field, value in zip(_JOB_FIELDS, values, strict=True):
            if hasattr(field, "from_db_value"):  # JSON columns: decoded by their field
                value = field.from_db_value(value, None, connection)
            setattr(self, field.attname, value)


def get(connection: Any, job_id: str) -> Any:
    """The job's record, or None: one indexed read without the ORM."""
    with connection.cursor() as cursor:
        cursor.execute(_GET_SQL, [job_id])
        found = cursor.fetchone()
    return job_record(_Row(found, connection)) if found else None


def _values_sql(obj: Any, fields: tuple[Any, ...], connection: Any,
                params: list[Any]) -> str:
    """``(%s, ...)`` for one row, its values (as the ORM prepares them) added to params."""
    params.extend(f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields)
    return "(" + ", ".join(["%s"] * len(fields)) + ")"


def insert(connection: Any, job: Job, states: list[JobState],
           properties: list[JobProperty]) -> None:
    """INSERT the job row, its first states and properties: one round trip, one
    implicit transaction (all or nothing)."""
    params: list[Any] = []
    sql = (f'INSERT INTO "{_JOB}" ({_columns(_JOB_FIELDS)}) VALUES '
           f"{_values_sql(job, _JOB_FIELDS, connection, params)}; "
           f'INSERT INTO "{_STATE}" ({_columns(_STATE_FIELDS)}) VALUES '
           + ", ".join(_values_sql(state, _STATE_FIELDS, connection, params)
                       for state in states))
    if properties:
        sql += (f'; INSERT INTO "{JobProperty._meta.db_table}" ({_columns(_PROPERTY_FIELDS)}) '
                "VALUES " + ", ".join(_values_sql(prop, _PROPERTY_FIELDS, connection, params)
                                      for prop in properties))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


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
          release_lock: bool, continuations: bool) -> tuple[int, list[ContinuationRecord]]:
    """Append the state, update the job row, read its continuations, COMMIT: one round
    trip."""
    sequence = row.sequence + 1
    sets: dict[str, tuple[str, Any]] = {
        "state": ("%s", state.name), "modified": ("%s", state.elected),
        "sequence": ("%s", sequence), "order": ("%s", ""),
    }
    for name, value in changes.items():
        if name in _JSON_COLUMNS:
            sets[name] = ("NULL", None) if value is None else ("%s::jsonb", json.dumps(value))
        else:
            sets[name] = ("%s", value)
    if state.name == "Enqueued":
        sets["cancel_requested"] = ("NULL", None)
    if take_lock is not None:
        now = utcnow()
        keep = row.lock_holder == holder and row.lock_acquired is not None
        sets.update(lock_holder=("%s", holder), lock_heartbeat=("%s", now),
                    lock_acquired=("%s", row.lock_acquired if keep else now),
                    lock_expires=("%s", now + timedelta(seconds=take_lock)))
    elif release_lock and row.lock_holder == holder:
        for name in ("lock_holder", "lock_acquired", "lock_heartbeat", "lock_expires"):
            sets[name] = ("NULL", None)
    assignments = ", ".join(f'"{_column(name)}" = {placeholder}'
                            for name, (placeholder, _) in sets.items())
    params: list[Any] = [job_id, sequence, state.name, state.elected, state.reason,
                         json.dumps(dict(state.data))]
    params += [value for placeholder, value in sets.values() if placeholder != "NULL"]
    params.append(job_id)
    sql = (
        f'INSERT INTO "{_STATE}" (job_id, sequence, name, elected, reason, data) '
        "VALUES (%s, %s, %s, %s, %s, %s::jsonb); "
        f'UPDATE "{_JOB}" SET {assignments} WHERE id = %s'
    )
    if continuations:
        sql += (f'; SELECT parent_id, child_id, "on", delete_on_other FROM "{_CONTINUATION}" '
                "WHERE parent_id = %s ORDER BY id")
        params.append(job_id)
    cursor.execute(sql + "; COMMIT", params)
    found: list[ContinuationRecord] = []
    if continuations:
        cursor.nextset()
        cursor.nextset()
        found = [ContinuationRecord(parent, child, On.parse(on) if on else On(0), delete)
                 for parent, child, on, delete in cursor.fetchall()]
    return sequence, found

