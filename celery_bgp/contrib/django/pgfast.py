"""PostgreSQL: a job's state transition in three round trips of plain SQL.

Every job crosses two transitions on its worker (Executing, then its final state), so
their cost bounds the engine's throughput. Through the ORM one costs seven round trips
(BEGIN, SET LOCAL, SELECT ... FOR NO KEY UPDATE, INSERT, UPDATE, SELECT continuations,
COMMIT) and the SQL compilation of each. Here, with psycopg 3's client-side binding
(Django's default), one transaction sends the lock read (with the ``SET LOCAL``) and
then the writes and the continuation read as one batch, then COMMIT.

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

from .models import Continuation, Job, JobState

__all__ = ["available", "lock_row", "write"]

_JSON_COLUMNS = frozenset({"result", "options"})


def available(connection: Any) -> bool:
    """True on PostgreSQL with psycopg 3 and client-side binding, outside a transaction."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
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


class LockedRow:
    """The columns of the locked job row that a transition's checks read."""

    __slots__ = ("lock_acquired", "lock_expires", "lock_holder", "sequence", "state")

    def __init__(self, state: str, sequence: int, lock_holder: str | None,
                 lock_acquired: Any, lock_expires: Any) -> None:
        self.state, self.sequence, self.lock_holder = state, sequence, lock_holder
        self.lock_acquired, self.lock_expires = lock_acquired, lock_expires


def lock_row(cursor: Any, job_id: str, durable: bool) -> LockedRow | None:
    """Lock the job row (and, when not ``durable``, skip the WAL flush at commit)."""
    if durable:
        cursor.execute(_LOCK_SQL, [job_id])
    else:
        cursor.execute("SET LOCAL synchronous_commit TO OFF; " + _LOCK_SQL, [job_id])
        cursor.nextset()
    found = cursor.fetchone()
    return LockedRow(*found) if found else None


def write(cursor: Any, job_id: str, row: LockedRow, state: StateRecord, *,
          holder: str | None, changes: Mapping[str, Any], take_lock: float | None,
          release_lock: bool, continuations: bool) -> tuple[int, list[ContinuationRecord]]:
    """Append the state, update the job row, read its continuations: one round trip."""
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
    cursor.execute(sql, params)
    found: list[ContinuationRecord] = []
    if continuations:
        cursor.nextset()
        cursor.nextset()
        found = [ContinuationRecord(parent, child, On.parse(on) if on else On(0), delete)
                 for parent, child, on, delete in cursor.fetchall()]
    return sequence, found

