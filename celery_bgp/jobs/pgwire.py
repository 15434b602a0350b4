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
written values are :func:`~.relational.transition_values`.

A transition of a row the store has just read or written (:class:`Seen`: a worker
reads its job, makes it Executing, then writes its final state) is one round trip: the
checks run against that version in Python, and the write is an ``UPDATE ... WHERE``
the row is still that version (same ``sequence``, which every state change bumps, same
state and lock holder, and the lock columns the checks read), with the history row
inserted from its ``RETURNING`` in the same statement. Anyone who moved the row since
(a cancel, lock-expiry recovery, another worker) makes it match no row, and the
transition takes the locking path above: the version only saves round trips, it never
decides an outcome. Used by the Django store
(``contrib/django/pgfast.py``) and the SQLAlchemy store, only for their own
transactions: inside a caller's transaction they take their general path.

Where the connection may keep prepared statements (Django's
``OPTIONS["prepare_threshold"]``, a ``db+`` URL's ``?prepare_threshold=``), a new job
and the worker's statements (the read and the one-round-trip writes) are single
statements bound on the server, which psycopg prepares after that many runs, and a
write with its continuations read is two of them in one round trip (psycopg's pipeline
mode: one implicit transaction up to its Sync, as a multi-statement string is).
PostgreSQL then skips parsing and planning them: its CPU per job halves
(``benchmarks/job_statements.py``). Preparing is off unless asked, as in Django, because
a pooler in transaction mode (PgBouncer before 1.21) loses prepared statements between
transactions; :class:`Wire` says which way a connection goes. psycopg forgets them at
every ROLLBACK it sees (the locking path's refusals send one), so they are parsed again
after it.
"""
from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from .model import ContinuationRecord, On, StateRecord, Transition
from .relational import check_transition, transition_values
from .store import JobNotFound, StateConflict

__all__ = ["JOB_COLUMNS", "LockedRow", "Seen", "Wire", "insert", "lock_row", "rollback",
           "transition", "write"]

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


Cursors = Callable[[], AbstractContextManager[Any]]


class Wire:
    """How one store's hot-path statements reach one psycopg connection.

    ``client`` opens a cursor that binds parameters on the client: multi-statement
    strings, one round trip each. ``bound`` (None where the connection keeps no prepared
    statements) opens one that binds them on the server, so psycopg prepares its single
    statements, and ``pipeline`` sends several of them in one round trip.
    """

    __slots__ = ("bound", "client", "pipeline")

    def __init__(self, client: Cursors, bound: Cursors | None = None,
                 pipeline: Cursors | None = None) -> None:
        if (bound is None) != (pipeline is None):
            raise ValueError("a Wire that binds on the server needs its pipeline too")
        self.client, self.bound, self.pipeline = client, bound, pipeline

    def single(self) -> AbstractContextManager[Any]:
        """A cursor for one statement: prepared where the connection allows."""
        return (self.bound or self.client)()


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


def insert(wire: Wire, job: Mapping[str, Any], states: Sequence[Mapping[str, Any]],
           properties: Sequence[Mapping[str, Any]]) -> None:
    """INSERT a job row, its first states and properties (column -> Python value, JSON
    columns as Python data): one round trip, one implicit transaction. A string of
    INSERTs, or where the connection prepares, one INSERT with the others as its
    data-modifying CTEs (foreign keys are checked at the statement's end)."""
    params: list[Any] = []
    statements = [_insert_sql(JOB, [job], params), _insert_sql(STATE, states, params)]
    if properties:
        statements.append(_insert_sql(PROPERTY, properties, params))
    if wire.bound is None:
        with wire.client() as cursor:
            cursor.execute("; ".join(statements), params)
        return
    *first, last = statements
    sql = "WITH " + ", ".join(f"w{i} AS ({s})" for i, s in enumerate(first)) + " " + last
    with wire.bound() as cursor:
        cursor.execute(sql, params)


class LockedRow:
    """The columns of the locked job row that a transition's checks read."""

    __slots__ = ("lock_acquired", "lock_expires", "lock_holder", "sequence", "state")

    def __init__(self, state: str, sequence: int, lock_holder: str | None,
                 lock_acquired: Any, lock_expires: Any) -> None:
        self.state, self.sequence, self.lock_holder = state, sequence, lock_holder
        self.lock_acquired, self.lock_expires = lock_acquired, lock_expires

    @classmethod
    def of(cls, row: Any) -> LockedRow:
        """The version of a job row read whole (attributes or a mapping)."""
        get = row.__getitem__ if isinstance(row, Mapping) else row.__getattribute__
        return cls(get("state"), get("sequence"), get("lock_holder"), get("lock_acquired"),
                   get("lock_expires"))

    def after(self, state: str, sequence: int, update: Mapping[str, Any]) -> LockedRow:
        """This version once a transition wrote ``update`` to it."""
        def lock(column: str) -> Any:
            return update[column] if column in update else getattr(self, column)
        return LockedRow(state, sequence, lock("lock_holder"), lock("lock_acquired"),
                         lock("lock_expires"))


class Seen:
    """The job row versions a store last read or wrote, per thread (the newest few).

    A version is taken (removed) by the transition that uses it; one that is stale
    costs that transition a round trip, never a wrong outcome.
    """

    SIZE = 64

    def __init__(self) -> None:
        self._local = threading.local()

    def _versions(self) -> dict[str, LockedRow]:
        versions = getattr(self._local, "versions", None)
        if versions is None:
            versions = self._local.versions = {}
        return versions

    def remember(self, job_id: str, version: LockedRow) -> None:
        versions = self._versions()
        versions.pop(job_id, None)
        versions[job_id] = version
        if len(versions) > self.SIZE:
            del versions[next(iter(versions))]

    def take(self, job_id: str) -> LockedRow | None:
        return self._versions().pop(job_id, None)

    def forget(self) -> None:
        """Drop this thread's versions (after a store error: nothing is trusted)."""
        self._versions().clear()


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


_CONTINUATIONS_SQL = (f'SELECT parent_id, child_id, "on", delete_on_other '
                      f'FROM "{CONTINUATION}" WHERE parent_id = %s ORDER BY id')


def _assignments(update: Mapping[str, Any], params: list[Any]) -> str:
    return ", ".join(f'"{_column(name)}" = {_placeholder(name, value, params)}'
                     for name, value in update.items())


def _state_params(job_id: str, applied: StateRecord) -> list[Any]:
    return [job_id, applied.sequence, applied.name, applied.elected, applied.reason,
            json.dumps(dict(applied.data))]


def _continuations(cursor: Any) -> list[ContinuationRecord]:
    return [ContinuationRecord(parent, child, On.parse(on) if on else On(0), delete)
            for parent, child, on, delete in cursor.fetchall()]


def write(cursor: Any, job_id: str, row: LockedRow, state: StateRecord, *,
          holder: str | None, changes: Mapping[str, Any], take_lock: float | None,
          release_lock: bool, continuations: bool
          ) -> tuple[StateRecord, list[ContinuationRecord], LockedRow]:
    """Append the state, update the job row, read its continuations, COMMIT: one round
    trip. Returns the applied state (numbered), the continuations and the row's new
    version."""
    applied, update = transition_values(row, state, holder=holder, changes=changes,
                                        take_lock=take_lock, release_lock=release_lock)
    params = _state_params(job_id, applied)
    sql = (
        f'INSERT INTO "{STATE}" (job_id, sequence, name, elected, reason, data) '
        "VALUES (%s, %s, %s, %s, %s, %s::jsonb); "
        f'UPDATE "{JOB}" SET {_assignments(update, params)} WHERE id = %s'
    )
    params.append(job_id)
    if continuations:
        sql += "; " + _CONTINUATIONS_SQL
        params.append(job_id)
    cursor.execute(sql + "; COMMIT", params)
    found: list[ContinuationRecord] = []
    if continuations:
        cursor.nextset()
        cursor.nextset()
        found = _continuations(cursor)
    return applied, found, row.after(state.name, applied.sequence, update)


def write_if_unchanged(wire: Wire, job_id: str, seen: LockedRow, state: StateRecord, *,
                       expected: Collection[str] | None, holder: str | None,
                       changes: Mapping[str, Any], take_lock: float | None,
                       release_lock: bool, continuations: bool, durable: bool
                       ) -> tuple[Transition, LockedRow] | None:
    """The transition in one round trip if the row is still the version ``seen``; None
    if it is not, or if the checks refuse ``seen`` (the caller then locks the row and
    decides on what is committed)."""
    try:
        check_transition(job_id, seen, state, expected, holder)
    except StateConflict:
        return None
    applied, update = transition_values(seen, state, holder=holder, changes=changes,
                                        take_lock=take_lock, release_lock=release_lock)
    params: list[Any] = []
    assignments = _assignments(update, params)
    # The columns the checks and the values above read: a row that still has them is
    # the row they were decided on. ``IS NOT DISTINCT FROM`` (no index can serve it)
    # keeps the planner on the primary key: with ``state = ...`` it may scan the
    # (state, created) index through every Enqueued job of a backlog.
    params += [job_id, seen.sequence, seen.state, seen.lock_holder]
    where = ("id = %s AND sequence = %s AND state IS NOT DISTINCT FROM %s "
             "AND lock_holder IS NOT DISTINCT FROM %s")
    if seen.lock_holder is not None and seen.lock_holder != holder:
        where += " AND lock_expires IS NOT DISTINCT FROM %s"  # an expired lock taken over
        params.append(seen.lock_expires)
    if take_lock is not None and seen.lock_holder == holder:
        where += " AND lock_acquired IS NOT DISTINCT FROM %s"  # kept as it was
        params.append(seen.lock_acquired)
    params += _state_params(job_id, applied)[1:]
    write = (f'moved AS (UPDATE "{JOB}" SET {assignments} WHERE {where} RETURNING id) '
             f'INSERT INTO "{STATE}" (job_id, sequence, name, elected, reason, data) '
             "SELECT id, %s, %s, %s, %s, %s::jsonb FROM moved")
    # The continuations are read by a statement of their own, in the same implicit
    # transaction: its snapshot starts after the row lock is held.
    if wire.bound is None:  # one string; SET LOCAL is read at its commit
        sql = ("" if durable else "SET LOCAL synchronous_commit TO OFF; ") + "WITH " + write
        if continuations:
            sql += "; " + _CONTINUATIONS_SQL
            params.append(job_id)
        with wire.client() as cursor:
            cursor.execute(sql, params)
            if not durable:
                cursor.nextset()
            moved, found = cursor.rowcount == 1, []
            if moved and continuations:
                cursor.nextset()
                found = _continuations(cursor)
    else:  # one statement each (prepared), SET LOCAL as set_config(..., true)
        sql = "WITH " + write if durable else (
            "WITH fast AS (SELECT set_config('synchronous_commit', 'off', true)), "
            + write + ", fast")
        with wire.bound() as cursor:
            if continuations:
                with wire.bound() as reader:
                    try:
                        with wire.pipeline():  # one round trip
                            cursor.execute(sql, params)
                            reader.execute(_CONTINUATIONS_SQL, [job_id])
                    except BaseException:
                        _forget_prepared(wire)
                        raise
                    found = _continuations(reader)
            else:
                cursor.execute(sql, params)
                found = []
            moved = cursor.rowcount == 1
    if not moved:  # moved since: nothing was written
        return None
    after = seen.after(state.name, applied.sequence, update)
    return Transition(seen.state, applied, tuple(found)), after


def _forget_prepared(wire: Wire) -> None:
    """After a pipeline failed: psycopg (3.3) may hold a statement as prepared whose
    Parse the failure skipped, and every later use of it would fail. DEALLOCATE ALL
    makes it forget them all (and the server too); they are prepared again."""
    with contextlib.suppress(Exception), wire.client() as cursor:  # a broken connection
        cursor.execute("DEALLOCATE ALL")


def transition(wire: Wire, job_id: str, state: StateRecord, *,
               expected: Collection[str] | None, holder: str | None,
               changes: Mapping[str, Any], take_lock: float | None, release_lock: bool,
               continuations: bool, durable: bool, seen: Seen | None = None) -> Transition:
    """A store's ``transition``: one round trip if ``seen`` holds the row's version and
    the row is still that version, else two: lock, check, write (or roll back)."""
    known = seen.take(job_id) if seen is not None else None
    if known is not None:
        done = write_if_unchanged(
            wire, job_id, known, state, expected=expected, holder=holder, changes=changes,
            take_lock=take_lock, release_lock=release_lock, continuations=continuations,
            durable=durable)
        if done is not None:
            seen.remember(job_id, done[1])
            return done[0]
    with wire.client() as cursor:
        row = lock_row(cursor, job_id, durable)
        try:
            if row is None:
                raise JobNotFound(f"no job {job_id}")
            check_transition(job_id, row, state, expected, holder)
            applied, found, after = write(
                cursor, job_id, row, state, holder=holder, changes=changes,
                take_lock=take_lock, release_lock=release_lock, continuations=continuations)
        except BaseException:
            with contextlib.suppress(Exception):  # a broken connection rolls back too
                rollback(cursor)
            raise
    if seen is not None:
        seen.remember(job_id, after)
    return Transition(row.state, applied, tuple(found))
