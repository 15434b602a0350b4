"""The SQLAlchemy job store: the JobStore contract on PostgreSQL, MySQL/MariaDB and SQLite.

``job_store="db+postgresql://user@host/db"`` (psycopg 3), ``"db+mysql://..."`` or
``"db+mariadb://..."`` (PyMySQL), ``"db+sqlite:///jobs.db"``, any ``db+<SQLAlchemy
URL>`` with a driver of your choice, or ``SQLAlchemyJobStore(engine)`` on an Engine of
yours. The tables are the Django app's (:mod:`.schema`, created by ``celery -A proj bgp
db upgrade``), so a Django admin can show and steer the jobs.

The same atomicity rules as the Django store, from the same code where it can be
shared (:mod:`celery_bgp.jobs.relational` decides each write, :mod:`celery_bgp.jobs.pgwire`
is the PostgreSQL hot path of both):

- Per-job serialization (:meth:`transition`, :meth:`add_continuation`,
  :meth:`record_events`): the job row is locked before anything is read
  (PostgreSQL ``FOR NO KEY UPDATE``, MySQL/MariaDB ``FOR UPDATE``); on SQLite the
  first statement writes the row, which takes the database's write lock.
- Locks are one conditional UPDATE each; ``search_and_lock`` and ``purge`` use ``FOR
  UPDATE SKIP LOCKED`` where the database has it.
- PostgreSQL with psycopg 3, outside a caller's transaction: a job costs one round trip
  to create, one to read and one per transition of a row this store has just read or
  written, else two (:mod:`celery_bgp.jobs.pgwire`).
- Inside ``bgp.jobs.transaction(connection_or_session)`` every call runs on the
  caller's connection and messages wait for its commit (:mod:`.transactions`).
"""
from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, case, delete, func, insert, literal, or_, select, update
from sqlalchemy import exc as sa_exc

from celery_bgp.commands import utcnow
from celery_bgp.jobs import pgwire
from celery_bgp.jobs.model import (
    ContinuationRecord,
    JobKind,
    JobRecord,
    LogRecord,
    On,
    StateRecord,
    Transition,
)
from celery_bgp.jobs.query import JobQuery
from celery_bgp.jobs.relational import (
    LOCK_COLUMNS,
    VALUE_COLUMNS,
    check_changes,
    check_transition,
    property_rows,
    transition_values,
)
from celery_bgp.jobs.store import (
    STALLED_STATES,
    JobExists,
    JobNotFound,
    JobStore,
    StoreSummary,
    delayed_past,
    initial_states,
)

from . import queries
from .engines import engine_from_url, unavailable_errors
from .events import CommandEvents, columns
from .records import (
    continuation_record,
    job_record,
    job_values,
    log_record,
    state_record,
    state_values,
    stored_property,
)
from .recurring import RecurringRows
from .schema import UTCDateTime, continuation, job, job_data, job_log, job_property, job_state

__all__ = ["SQLAlchemyJobStore", "engine_from_url"]


class SQLAlchemyJobStore(RecurringRows, CommandEvents, JobStore):
    """Jobs in the ``celery_bgp_*`` tables of one SQLAlchemy Engine (or ``db+`` URL)."""

    #: Connection refused or lost, server restarting, lock or statement timeouts.
    unavailable = unavailable_errors(JobStore.unavailable)

    @classmethod
    def from_url(cls, url: str) -> SQLAlchemyJobStore:
        return cls(url)

    def __repr__(self) -> str:
        return f"SQLAlchemyJobStore({self.engine.url.render_as_string(hide_password=True)!r})"

    def __eq__(self, other: object) -> bool:
        """Two stores on one database are the same store (the same rows)."""
        if not isinstance(other, SQLAlchemyJobStore):
            return NotImplemented
        return self.engine.url == other.engine.url

    def __hash__(self) -> int:
        return hash((SQLAlchemyJobStore, str(self.engine.url)))

    # -- jobs and states ---------------------------------------------------------------

    def create(self, new: JobRecord, initial: StateRecord | Sequence[StateRecord],
               properties: Mapping[str, Any] | None = None) -> None:
        history = initial_states(new, initial)
        props = property_rows(new.id, properties or {})
        row = job_values(new, len(history))
        states = [state_values(new.id, state, i) for i, state in enumerate(history, 1)]
        if self._hot():
            import psycopg

            try:
                with self._wire() as wire:
                    pgwire.insert(wire, row, states, props)
                return
            except psycopg.IntegrityError as exc:
                if self.get(new.id) is not None:
                    raise JobExists(f"job {new.id} already exists") from exc
                raise
        try:
            with self._begin() as connection:
                connection.execute(insert(job), [row])
                connection.execute(insert(job_state), states)
                if props:
                    connection.execute(insert(job_property), props)
        except sa_exc.IntegrityError as exc:
            if self.get(new.id) is not None:
                raise JobExists(f"job {new.id} already exists") from exc
            raise

    def get(self, job_id: str) -> JobRecord | None:
        if self._hot():
            with self._wire() as wire, wire.single() as cursor:
                cursor.execute(pgwire.GET_SQL, [job_id])
                found = cursor.fetchone()
            if not found:
                return None
            row = dict(zip(pgwire.JOB_COLUMNS, found, strict=True))
            self._seen.remember(job_id, pgwire.LockedRow.of(row))
            return job_record(row)
        with self._read() as connection:
            found = connection.execute(select(job).where(job.c.id == job_id)).mappings().first()
        return job_record(found) if found else None

    def states(self, job_id: str) -> list[StateRecord]:
        with self._read() as connection:
            rows = connection.execute(select(job_state).where(job_state.c.job_id == job_id)
                                      .order_by(job_state.c.sequence)).mappings().all()
        return [state_record(row) for row in rows]

    def transition(self, job_id: str, state: StateRecord, *,
                   expected: Collection[str] | None = None, holder: str | None = None,
                   changes: Mapping[str, Any] | None = None, take_lock: float | None = None,
                   release_lock: bool = False, continuations: bool = True,
                   durable: bool = True) -> Transition:
        changes = check_changes(changes, holder, take_lock, release_lock)
        if self._hot():
            return self._pg_transition(job_id, state, expected, holder, changes, take_lock,
                                       release_lock, continuations, durable)
        own = self.binding.current() is None
        with self._begin() as connection:
            if not durable and own and self.postgresql:
                connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            row = self._lock_row(connection, job_id)
            check_transition(job_id, row, state, expected, holder)
            applied, values = transition_values(row, state, holder=holder, changes=changes,
                                                take_lock=take_lock, release_lock=release_lock)
            connection.execute(insert(job_state), [state_values(job_id, applied,
                                                                applied.sequence)])
            connection.execute(update(job).where(job.c.id == job_id).values(columns(values)))
            found = self._continuations(connection, job_id, locked=True) \
                if continuations else []
        return Transition(row.state, applied, tuple(found))

    def _pg_transition(self, job_id: str, state: StateRecord, expected: Collection[str] | None,
                       holder: str | None, changes: dict[str, Any], take_lock: float | None,
                       release_lock: bool, continuations: bool, durable: bool) -> Transition:
        """:meth:`transition` in one or two round trips (:mod:`celery_bgp.jobs.pgwire`)."""
        with self._wire() as wire:
            return pgwire.transition(
                wire, job_id, state, expected=expected, holder=holder, changes=changes,
                take_lock=take_lock, release_lock=release_lock, continuations=continuations,
                durable=durable, seen=self._seen)

    # -- continuations -----------------------------------------------------------------

    def _continuations(self, connection: Connection, parent_id: str,
                       locked: bool = False) -> list[ContinuationRecord]:
        stmt = (select(continuation).where(continuation.c.parent_id == parent_id)
                .order_by(continuation.c.id))
        if locked and self.mysql:  # a locking read: latest rows under any isolation
            stmt = stmt.with_for_update()
        return [continuation_record(row) for row in connection.execute(stmt).mappings()]

    def add_continuation(self, parent_id: str, child_id: str, on: On,
                         delete_on_other: bool = False) -> str:
        on = On.parse(on)
        with self._begin() as connection:
            parent = self._lock_row(connection, parent_id)
            if connection.execute(select(job.c.id).where(job.c.id == child_id)).first() is None:
                raise JobNotFound(f"no job {child_id} (the continuation's child)")
            connection.execute(insert(continuation), [{
                "parent_id": parent_id, "child_id": child_id, "on": on.to_text(),
                "delete_on_other": delete_on_other}])
            return parent.state

    def continuations(self, parent_id: str) -> list[ContinuationRecord]:
        with self._read() as connection:
            return self._continuations(connection, parent_id)

    def parents(self, child_id: str) -> list[ContinuationRecord]:
        with self._read() as connection:
            rows = connection.execute(select(continuation)
                                      .where(continuation.c.child_id == child_id)
                                      .order_by(continuation.c.id)).mappings().all()
        return [continuation_record(row) for row in rows]

    # -- locks -------------------------------------------------------------------------

    def acquire_lock(self, job_id: str, holder: str, timeout: float) -> bool:
        now = utcnow()
        stmt = (update(job).where(job.c.id == job_id, _free(holder, now))
                .ordered_values(*_lock_values(holder, now, now + timedelta(seconds=timeout))))
        with self._single() as connection:
            taken = connection.execute(stmt).rowcount
        return bool(taken) or self._missing(job_id)

    def heartbeat(self, job_id: str, holder: str, timeout: float) -> bool:
        now = utcnow()
        stmt = (update(job).where(job.c.id == job_id, job.c.lock_holder == holder)
                .values(lock_heartbeat=now, lock_expires=now + timedelta(seconds=timeout)))
        with self._single() as connection:
            extended = connection.execute(stmt).rowcount
        return bool(extended) or self._missing(job_id)

    def _missing(self, job_id: str) -> bool:
        """False if the job exists; JobNotFound if it does not."""
        if self.get(job_id) is None:
            raise JobNotFound(f"no job {job_id}")
        return False

    def release_lock(self, job_id: str, holder: str) -> None:
        with self._single() as connection:
            connection.execute(update(job).where(job.c.id == job_id, job.c.lock_holder == holder)
                               .values(dict.fromkeys(LOCK_COLUMNS)))

    def expired(self, now: datetime, states: Collection[str] = ("Executing",),
                limit: int = 100) -> list[JobRecord]:
        stmt = (select(job).where(job.c.state.in_(list(states)),
                                  job.c.kind == JobKind.CALLABLE.value,
                                  or_(job.c.lock_expires.is_(None), job.c.lock_expires < now))
                .order_by(job.c.modified).limit(limit))
        with self._read() as connection:
            return [job_record(row) for row in connection.execute(stmt).mappings()]

    def stalled(self, before: datetime, environment: str | None = None,
                limit: int = 100) -> list[JobRecord]:
        """A range of the ``(environment, state, modified)`` index, each candidate with
        its current state (``(job, sequence)``, unique) to tell whether it is delayed."""
        scope = [job.c.state.in_(list(STALLED_STATES)), job.c.kind == JobKind.CALLABLE.value,
                 job.c.modified < before]
        if environment is not None:
            scope.append(job.c.environment == environment)
        current = job_state.alias("current")
        stmt = (select(job, current.c.name.label("current_name"),
                       current.c.elected.label("current_elected"),
                       current.c.data.label("current_data"))
                .outerjoin(current, (current.c.job_id == job.c.id)
                           & (current.c.sequence == job.c.sequence))
                .where(*scope).order_by(job.c.modified, job.c.id))
        found: list[JobRecord] = []
        page, offset = max(limit, 100), 0
        with self._read() as connection:
            while len(found) < limit:
                rows = connection.execute(stmt.limit(page).offset(offset)).mappings().all()
                for row in rows:
                    state = StateRecord(row["current_name"] or "", row["current_elected"],
                                        data=row["current_data"] or {})
                    if row["current_name"] is None or not delayed_past(state, before):
                        found.append(job_record(row))
                if len(rows) < page:
                    break
                offset += page
        return found[:limit]

    # -- properties, data, logs, actions ----------------------------------------------

    def set_properties(self, job_id: str, properties: Mapping[str, Any]) -> None:
        rows = property_rows(job_id, properties)
        with self._writing(job_id) as connection:
            self._upsert(connection, job_property, rows, ["job_id", "name"], VALUE_COLUMNS)

    def properties(self, job_id: str) -> dict[str, Any]:
        with self._read() as connection:
            rows = connection.execute(select(job_property)
                                      .where(job_property.c.job_id == job_id)
                                      .order_by(job_property.c.id)).mappings().all()
        return {row["name"]: stored_property(row) for row in rows}

    def set_data(self, job_id: str, key: str, value: Any) -> None:
        with self._writing(job_id) as connection:
            self._upsert(connection, job_data, [{"job_id": job_id, "key": key, "value": value}],
                         ["job_id", "key"], ["value"])

    def data(self, job_id: str) -> dict[str, Any]:
        with self._read() as connection:
            rows = connection.execute(select(job_data.c.key, job_data.c.value)
                                      .where(job_data.c.job_id == job_id)
                                      .order_by(job_data.c.id)).all()
        return {key: value for key, value in rows}

    def add_log(self, job_id: str, record: LogRecord) -> None:
        with self._writing(job_id) as connection:
            connection.execute(insert(job_log), [{
                "job_id": job_id, "level": record.level, "message": record.message,
                "exception": record.exception, "time": record.time}])

    def logs(self, job_id: str, limit: int = 1000) -> list[LogRecord]:
        with self._read() as connection:
            rows = connection.execute(select(job_log).where(job_log.c.job_id == job_id)
                                      .order_by(job_log.c.id.desc()).limit(limit)
                                      ).mappings().all()
        return [log_record(row) for row in reversed(rows)]

    def request_cancel(self, job_id: str) -> None:
        with self._single() as connection:
            found = connection.execute(update(job).where(job.c.id == job_id)
                                       .values(cancel_requested=utcnow())).rowcount
        if not found:
            raise JobNotFound(f"no job {job_id}")

    def cancel_requested(self, job_id: str) -> bool:
        with self._read() as connection:
            return connection.execute(select(job.c.id).where(
                job.c.id == job_id, job.c.cancel_requested.is_not(None))).first() is not None

    # -- query and retention -----------------------------------------------------------

    def search(self, query: JobQuery) -> list[JobRecord]:
        stmt = (select(job).where(*queries.where(query, self.dialect))
                .order_by(*queries.order_by(query)).limit(query.limit).offset(query.offset))
        with self._read() as connection:
            return [job_record(row) for row in connection.execute(stmt).mappings()]

    def count(self, query: JobQuery) -> int:
        stmt = select(func.count()).select_from(job).where(*queries.where(query, self.dialect))
        with self._read() as connection:
            return int(connection.execute(stmt).scalar_one())

    def summary(self, environment: str | None, since: datetime) -> StoreSummary:
        """One GROUP BY (queue, state), one count of recent finishes, and one
        ``MIN(created)`` per queue with waiting jobs (answered by an index)."""
        scope = [job.c.environment == environment] if environment is not None else []
        out = StoreSummary()
        with self._read() as connection:
            per_queue = connection.execute(
                select(job.c.queue, job.c.state, func.count()).where(*scope)
                .group_by(job.c.queue, job.c.state)).all()
            for queue, state, n in per_queue:
                out.states[state] = out.states.get(state, 0) + n
                out.queues.setdefault(queue, {})[state] = n
            out.finished_since = int(connection.execute(
                select(func.count()).select_from(job).where(
                    *scope, job.c.state.in_(["Succeeded", "Failed"]), job.c.modified >= since)
            ).scalar_one())
            for queue, counts in sorted(out.queues.items()):
                if counts.get("Enqueued"):
                    oldest = connection.execute(
                        select(func.min(job.c.created)).where(
                            *scope, job.c.queue == queue, job.c.state == "Enqueued")
                    ).scalar_one()
                    if oldest is not None:
                        out.oldest_waiting[queue] = UTCDateTime().process_result_value(
                            oldest, self.engine.dialect)
        return out

    def search_and_lock(self, query: JobQuery, holder: str, timeout: float) -> list[JobRecord]:
        now = utcnow()
        expires = now + timedelta(seconds=timeout)
        stmt = (select(job).where(*queries.where(query, self.dialect), _free(holder, now))
                .order_by(*queries.order_by(query)).limit(query.limit).offset(query.offset))
        if not self.sqlite:
            stmt = stmt.with_for_update(skip_locked=True, key_share=self.postgresql)
        with self._begin() as connection:
            self._write_lock(connection)
            rows = [dict(row) for row in connection.execute(stmt).mappings()]
            if rows:
                connection.execute(update(job).where(job.c.id.in_([r["id"] for r in rows]))
                                   .ordered_values(*_lock_values(holder, now, expires)))
        for row in rows:
            if row["lock_holder"] != holder:
                row["lock_acquired"] = now
            row.update(lock_holder=holder, lock_heartbeat=now, lock_expires=expires)
        return [job_record(row) for row in rows]

    def purge(self, states: Collection[str], before: datetime, environment: str | None = None,
              batch_size: int = 1000) -> int:
        scope = [job.c.state.in_(list(states)), job.c.modified < before]
        if environment is not None:
            scope.append(job.c.environment == environment)
        stmt = select(job.c.id).where(*scope).limit(batch_size)
        if not self.sqlite:
            stmt = stmt.with_for_update(skip_locked=True)
        total = 0
        while True:
            with self._begin() as connection:  # one short transaction per batch
                self._write_lock(connection)
                ids = list(connection.execute(stmt).scalars())
                if not ids:
                    return total
                # The foreign keys do not cascade (Django's schema): children first.
                for table in (job_state, job_property, job_data, job_log):
                    connection.execute(delete(table).where(table.c.job_id.in_(ids)))
                connection.execute(delete(continuation).where(or_(
                    continuation.c.parent_id.in_(ids), continuation.c.child_id.in_(ids))))
                total += connection.execute(delete(job).where(job.c.id.in_(ids))).rowcount

# -- helpers ----------------------------------------------------------------------------


def _free(holder: str, now: datetime) -> Any:
    """Rows whose lock ``holder`` may take: free, already theirs, or expired."""
    return or_(job.c.lock_holder.is_(None), job.c.lock_holder == holder,
               job.c.lock_expires < now)


def _lock_values(holder: str, now: datetime, expires: datetime) -> list[tuple[Any, Any]]:
    # lock_acquired first: MySQL evaluates SET assignments left to right, so it must
    # read lock_holder before that column is overwritten.
    acquired = case((job.c.lock_holder == holder, job.c.lock_acquired),
                    else_=literal(now, UTCDateTime()))
    return [(job.c.lock_acquired, acquired), (job.c.lock_holder, holder),
            (job.c.lock_heartbeat, now), (job.c.lock_expires, expires)]


