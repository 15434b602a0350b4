"""PostgreSQL: a job's hot path (create, read, transition) in plain SQL, for the SQL stores.

Every job is created once, read once by its worker, and crosses two transitions there
(Executing, then its final state), so their round trips bound the engine's throughput.
With psycopg 3's client-side binding (``psycopg.ClientCursor``; Django's default) and
the connection in autocommit, a transition is one round trip: ``BEGIN; [SET LOCAL
...;] WITH <lock the row, check, append the state, update the row> SELECT ...; SELECT
continuations; COMMIT``. The checks of :func:`~.relational.check_transition` are SQL
conditions on the locked row, so nothing is written when they fail, and the row the
statement returns lets Python name the conflict. A new job's row, first states and
properties are one multi-statement string, which PostgreSQL runs as one implicit
transaction.

The rules are the stores' general path: the job row is locked before anything is
written, the continuations are read by a statement that starts after the lock is held
(a fresh snapshot in READ COMMITTED, so a continuation attached just before is seen),
and the written values are :func:`~.relational.transition_values`' (here as SQL: the
general path and the store contract tests keep the two the same). Used by the
Django store (``contrib/django/pgfast.py``) and the SQLAlchemy store, only for their
own transactions: inside a caller's transaction they take their general path.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Collection, Mapping, Sequence
from datetime import timedelta
from typing import Any

from ..commands import utcnow
from .model import ContinuationRecord, On, StateRecord, Transition
from .relational import LOCK_COLUMNS, check_transition
from .store import JobNotFound, StateConflict

__all__ = ["JOB_COLUMNS", "LockedRow", "insert", "rollback", "transition"]

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


def rollback(cursor: Any) -> None:
    """End the transaction :func:`lock_row` opened, changing nothing."""
    cursor.execute("ROLLBACK")


def transition(cursor: Any, job_id: str, state: StateRecord, *,
               expected: Collection[str] | None, holder: str | None,
               changes: Mapping[str, Any], take_lock: float | None, release_lock: bool,
               continuations: bool, durable: bool) -> Transition:
    """A store's ``transition`` in one round trip: lock, check, write, COMMIT.

    One statement locks the row and, only where the checks of
    :func:`~.relational.check_transition` hold for the locked row (written as SQL
    conditions), appends the state and updates the row with
    :func:`~.relational.transition_values`' values (the lock columns computed from
    the locked row in SQL); it returns the locked row's columns and whether it wrote.
    When it did not, nothing changed, and :func:`check_transition` on the returned row
    raises the conflict it names. The continuations are read by the next statement,
    which starts after the lock is held, as before.
    """
    params: list[Any] = [job_id]
    conditions = []
    if expected is not None:
        conditions.append("state = ANY(%s)" if expected else "FALSE")
        if expected:
            params.append(sorted(expected))
    if holder is not None:
        conditions.append("(lock_holder IS NULL OR lock_holder = %s OR lock_expires IS NULL "
                          "OR lock_expires < %s)")
        params += [holder, state.elected]
    where = " AND ".join(conditions) or "TRUE"
    params += [state.name, state.elected, state.reason, json.dumps(dict(state.data))]
    assignments = []
    update: dict[str, Any] = {"state": state.name, "modified": state.elected, "order": "",
                              **changes}
    if state.name == "Enqueued":
        update["cancel_requested"] = None  # a cancel request is per execution
    for name, value in update.items():
        assignments.append(f'"{_column(name)}" = {_placeholder(name, value, params)}')
    if take_lock is not None:
        now = utcnow()
        assignments.append(
            "lock_holder = %s, lock_heartbeat = %s, lock_expires = %s, lock_acquired = "
            "CASE WHEN ok.lock_holder = %s AND ok.lock_acquired IS NOT NULL "
            "THEN ok.lock_acquired ELSE %s END")
        params += [holder, now, now + timedelta(seconds=take_lock), holder, now]
    elif release_lock:
        for column in LOCK_COLUMNS:
            assignments.append(f"{column} = CASE WHEN ok.lock_holder = %s THEN NULL "
                               f"ELSE j.{column} END")
            params.append(holder)
    sql = (
        ("BEGIN; " if durable else "BEGIN; SET LOCAL synchronous_commit TO OFF; ")
        + f'WITH cur AS (SELECT id, state, sequence, lock_holder, lock_acquired, lock_expires '
        f'FROM "{JOB}" WHERE id = %s FOR NO KEY UPDATE), '
        f"ok AS (SELECT * FROM cur WHERE {where}), "
        f'ins AS (INSERT INTO "{STATE}" (job_id, sequence, name, elected, reason, data) '
        "SELECT id, sequence + 1, %s, %s, %s, %s::jsonb FROM ok), "
        f'upd AS (UPDATE "{JOB}" AS j SET sequence = ok.sequence + 1, '
        + ", ".join(assignments) + " FROM ok WHERE j.id = ok.id) "
        "SELECT state, sequence, lock_holder, lock_acquired, lock_expires, "
        "EXISTS (SELECT 1 FROM ok) FROM cur"
    )
    if continuations:
        sql += (f'; SELECT parent_id, child_id, "on", delete_on_other FROM "{CONTINUATION}" '
                "WHERE parent_id = %s ORDER BY id")
        params.append(job_id)
    try:
        cursor.execute(sql + "; COMMIT", params)
        results = _row_sets(cursor)
    except BaseException:
        with contextlib.suppress(Exception):  # a broken connection rolls back too
            rollback(cursor)
        raise
    if not results[0]:
        raise JobNotFound(f"no job {job_id}")
    *locked, wrote = results[0][0]
    row = LockedRow(*locked)
    if not wrote:
        check_transition(job_id, row, state, expected, holder)
        raise StateConflict(f"job {job_id} changed meanwhile")  # pragma: no cover
    found = [ContinuationRecord(parent, child, On.parse(on) if on else On(0), delete)
             for parent, child, on, delete in (results[1] if continuations else [])]
    applied = dataclasses.replace(state, sequence=row.sequence + 1)
    return Transition(row.state, applied, tuple(found))


def _row_sets(cursor: Any) -> list[list[tuple]]:
    """The rows of each statement of a multi-statement execute that returned rows."""
    sets = []
    while True:
        if cursor.description is not None:
            sets.append(cursor.fetchall())
        if not cursor.nextset():
            return sets
