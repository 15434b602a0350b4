"""The Django ORM job store: the JobStore contract on PostgreSQL, MySQL/MariaDB and SQLite.

How the contract's atomicity rules hold on each database:

- Per-job serialization (:meth:`~DjangoJobStore.transition`,
  :meth:`~DjangoJobStore.add_continuation`, :meth:`~DjangoJobStore.record_events`):
  inside ``transaction.atomic`` the job row is locked before anything is read.
  PostgreSQL: ``SELECT ... FOR NO KEY UPDATE`` (serializes writers of the job but
  not inserts of rows that reference it, such as log lines). MySQL/MariaDB:
  ``SELECT ... FOR UPDATE``, a locking read that returns the latest committed row
  whatever the isolation level. SQLite has no row locks: the first statement is a
  write to the row, which takes the database's write lock until commit; a read
  first would let two deferred transactions deadlock on the lock upgrade.
- Locks: ``acquire_lock``/``heartbeat``/``release_lock`` are one conditional UPDATE
  each; the database re-checks the condition on the row it writes, so two holders
  never both win.
- ``search_and_lock``: ``FOR UPDATE SKIP LOCKED`` (PostgreSQL, MariaDB 10.6+, MySQL
  8) then an UPDATE of the rows found, in one transaction; SQLite takes its write
  lock first and so runs one at a time.
- ``on_commit``: ``transaction.on_commit(fn, using=alias)``: work asked for inside a
  caller's ``transaction.atomic()`` runs after its commit, never after a rollback.
"""
from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import (
    DataError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connections,
    models,
    transaction,
)
from django.db.models import Case, Count, Exists, F, Min, OuterRef, Q, Value, When
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Left

from celery_bgp.commands import utcnow
from celery_bgp.events.model import CommandEvent
from celery_bgp.events.repository import group_by_command
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
from celery_bgp.jobs.query import JobQuery, property_value
from celery_bgp.jobs.relational import (
    VALUE_COLUMNS,
    check_changes,
    check_transition,
    is_deadlock,
    job_values,
    property_columns,
    property_rows,
    state_values,
    transition_values,
)
from celery_bgp.jobs.store import (
    STALLED_STATES,
    JobExists,
    JobNotFound,
    JobStore,
    StoreSummary,
    fresh_events,
    in_life_order,
    initial_states,
)

from . import kept, pgfast
from .models import Continuation, Job, JobData, JobLog, JobProperty, JobState
from .queries import filtered
from .records import (
    apply_events,
    command_row,
    continuation_record,
    event_row,
    job_record,
    job_row,
    log_record,
    state_record,
    state_row,
)
from .recurring_store import RecurringRows

__all__ = ["DjangoJobStore"]

class DjangoJobStore(RecurringRows, JobStore):
    """Jobs in the ``celery_bgp_*`` tables of one database alias (``using``)."""

    #: Connection refused or lost, server restarting, lock or statement timeouts.
    unavailable = (OperationalError, InterfaceError, *JobStore.unavailable)
    #: Write errors that one bad event causes: the recorder retries event by event.
    event_errors = (IntegrityError, DataError, TypeError, ValueError)

    def __init__(self, using: str = "default") -> None:
        self.using = using
        self._local = threading.local()  # .keep: this thread runs a job on a worker
        self._seen = pgwire.Seen()  # row versions for one-round-trip transitions

    def __repr__(self) -> str:
        return f"DjangoJobStore(using={self.using!r})"

    def __eq__(self, other: object) -> bool:
        """Two stores on one database alias are the same store (the same rows)."""
        if not isinstance(other, DjangoJobStore):
            return NotImplemented
        return self.using == other.using

    def __hash__(self) -> int:
        return hash((DjangoJobStore, self.using))

    # -- plumbing ----------------------------------------------------------------------

    @property
    def connection(self) -> Any:
        """The Django connection of this thread for the store's alias."""
        return connections[self.using]

    def _jobs(self) -> models.QuerySet[Job]:
        return Job.objects.using(self.using).all()

    def _fast(self) -> Any | None:
        """The connection for a statement that is its own transaction on PostgreSQL
        (:mod:`.pgfast`), or None: then the ORM path runs on Django's connection.

        While a worker runs a job (:meth:`session`) that is the thread's kept
        connection (:mod:`.kept`), unless Django's is inside a transaction: the
        caller's rules then hold.
        """
        default = self.connection
        if getattr(self._local, "keep", False) and default.vendor == "postgresql" \
                and not default.in_atomic_block and not kept.pooled(default) \
                and (default.autocommit if default.connection is not None
                     else default.settings_dict.get("AUTOCOMMIT", True)):
            own = kept.connection(self.using)
            if pgfast.available(own):
                return own
        return default if pgfast.available(default) else None

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Around one job's run on a worker: the engine's own statements run on a
        connection kept for the next job (Celery closes Django's after each task)."""
        outer = getattr(self._local, "keep", False)
        self._local.keep = True
        try:
            yield
        finally:
            self._local.keep = outer

    def on_idle(self) -> None:
        """Close this thread's connection unless it is inside a transaction."""
        kept.discard(self.using)
        self._seen.forget()
        connection = self.connection
        if not connection.in_atomic_block:
            connection.close()

    def _fast_commit(self) -> None:
        """PostgreSQL: commit this transaction without waiting for the WAL flush.

        Only when it is our own transaction; inside a caller's, their durability rules.
        """
        connection = self.connection
        if connection.vendor == "postgresql" and len(connection.savepoint_ids) == 0:
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")

    def _atomic(self) -> transaction.Atomic:
        return transaction.atomic(using=self.using)

    def _for_update(self, jobs: models.QuerySet[Job], *, no_key: bool = True,
                    skip_locked: bool = False) -> models.QuerySet[Job]:
        """Lock the selected rows (no-op where rows cannot be locked: SQLite).

        ``skip_locked`` is used where the database has it (else rows are waited for);
        ``no_key`` (PostgreSQL) still lets other sessions insert rows that reference
        the job, such as its log lines.
        """
        features = self.connection.features
        if not features.has_select_for_update:
            return jobs
        options = {}
        if no_key and features.has_select_for_no_key_update:
            options["no_key"] = True
        if skip_locked and features.has_select_for_update_skip_locked:
            options["skip_locked"] = True
        return jobs.select_for_update(**options)

    def _lock_row(self, job_id: str) -> Job:
        """Lock one job row for the rest of the transaction; return it as now committed."""
        jobs = self._jobs().filter(pk=job_id)
        if self.connection.features.has_select_for_update:
            row = self._for_update(jobs).first()
        else:  # SQLite: write first, so this transaction holds the write lock
            row = jobs.first() if jobs.update(sequence=F("sequence")) else None
        if row is None:
            raise JobNotFound(f"no job {job_id}")
        return row

    def _write_lock(self) -> None:
        """SQLite: take the database write lock now (a zero-row UPDATE does)."""
        if not self.connection.features.has_select_for_update:
            self._jobs().filter(pk="").update(sequence=F("sequence"))

    @contextlib.contextmanager
    def _writing(self, job_id: str) -> Iterator[None]:
        """A transaction that writes rows of an existing job (else JobNotFound)."""
        try:
            with self._atomic():
                jobs = self._jobs().filter(pk=job_id)
                if self.connection.features.has_select_for_update:
                    found = jobs.exists()
                else:  # SQLite: write first (see _lock_row)
                    found = bool(jobs.update(sequence=F("sequence")))
                if not found:
                    raise JobNotFound(f"no job {job_id}")
                yield
        except IntegrityError as exc:  # the job was deleted meanwhile (foreign key)
            if not self._jobs().filter(pk=job_id).exists():
                raise JobNotFound(f"no job {job_id}") from exc
            raise

    def _upsert(self, model: type[models.Model], rows: list[Any], unique: list[str],
                update: Sequence[str]) -> None:
        """Insert or update by a unique key, in one statement (no read-modify-write)."""
        if not rows:
            return
        target = unique if self.connection.features.supports_update_conflicts_with_target \
            else None
        model.objects.using(self.using).bulk_create(
            rows, update_conflicts=True, unique_fields=target, update_fields=list(update))

    # -- jobs and states ---------------------------------------------------------------

    def create(self, job: JobRecord, initial: StateRecord | Sequence[StateRecord],
               properties: Mapping[str, Any] | None = None) -> None:
        history = initial_states(job, initial)
        try:
            fast = self._fast()
            if fast is not None or pgfast.in_transaction(self.connection):
                # The SQL stores' shared SQL, no models: its own implicit transaction, or
                # a savepoint of the caller's (a failed insert leaves theirs usable).
                columns = (job_values(job, len(history)),
                           [state_values(job.id, state, i)
                            for i, state in enumerate(history, 1)],
                           property_rows(job.id, properties or {}))
                with contextlib.nullcontext() if fast is not None else self._atomic():
                    pgwire.insert(pgfast.wire(fast or self.connection), *columns)
                return
            props = _property_rows(job.id, properties or {})
            row = job_row(job, len(history))
            states = [state_row(job.id, state, i) for i, state in enumerate(history, 1)]
            with self._atomic():
                row.save(using=self.using, force_insert=True)
                JobState.objects.using(self.using).bulk_create(states)
                if props:
                    JobProperty.objects.using(self.using).bulk_create(props)
        except IntegrityError as exc:
            if self._jobs().filter(pk=job.id).exists():
                raise JobExists(f"job {job.id} already exists") from exc
            raise

    def get(self, job_id: str) -> JobRecord | None:
        fast = self._fast()
        if fast is not None:
            return pgfast.get(fast, job_id, self._seen)
        try:
            return job_record(self._jobs().get(pk=job_id))
        except Job.DoesNotExist:
            return None

    def states(self, job_id: str) -> list[StateRecord]:
        rows = JobState.objects.using(self.using).filter(job_id=job_id).order_by("sequence")
        return [state_record(row) for row in rows]

    def transition(self, job_id: str, state: StateRecord, *,
                   expected: Collection[str] | None = None, holder: str | None = None,
                   changes: Mapping[str, Any] | None = None, take_lock: float | None = None,
                   release_lock: bool = False, continuations: bool = True,
                   durable: bool = True) -> Transition:
        changes = check_changes(changes, holder, take_lock, release_lock)
        fast = self._fast()
        if fast is not None:
            return self._pg_transition(fast, job_id, state, expected, holder, changes,
                                       take_lock, release_lock, continuations, durable)
        with self._atomic():
            if not durable:
                self._fast_commit()
            row = self._lock_row(job_id)
            check_transition(job_id, row, state, expected, holder)
            applied, update = transition_values(row, state, holder=holder, changes=changes,
                                                take_lock=take_lock, release_lock=release_lock)
            JobState.objects.using(self.using).bulk_create(
                [state_row(job_id, applied, applied.sequence)])
            self._jobs().filter(pk=job_id).update(**update)
            found = self._continuations_locked(job_id) if continuations else []
        return Transition(row.state, applied, tuple(found))

    def _pg_transition(self, connection: Any, job_id: str, state: StateRecord,
                       expected: Collection[str] | None, holder: str | None,
                       changes: dict[str, Any], take_lock: float | None, release_lock: bool,
                       continuations: bool, durable: bool) -> Transition:
        """:meth:`transition` in one or two round trips (see :mod:`.pgfast`), same checks."""
        return pgwire.transition(
            pgfast.wire(connection), job_id, state, expected=expected, holder=holder,
            changes=changes, take_lock=take_lock, release_lock=release_lock,
            continuations=continuations, durable=durable, seen=self._seen)

    # -- continuations -----------------------------------------------------------------

    def _continuations_locked(self, parent_id: str) -> list[ContinuationRecord]:
        """Continuations of a parent whose row this transaction has locked."""
        rows = Continuation.objects.using(self.using).filter(parent_id=parent_id).order_by("id")
        if self.connection.vendor == "mysql":  # a locking read: latest rows under any isolation
            rows = rows.select_for_update()
        return [continuation_record(row) for row in rows]

    def add_continuation(self, parent_id: str, child_id: str, on: On,
                         delete_on_other: bool = False) -> str:
        on = On.parse(on)
        with self._atomic():
            parent = self._lock_row(parent_id)
            if not self._jobs().filter(pk=child_id).exists():
                raise JobNotFound(f"no job {child_id} (the continuation's child)")
            Continuation.objects.using(self.using).create(
                parent_id=parent_id, child_id=child_id, on=on.to_text(),
                delete_on_other=delete_on_other)
            return parent.state

    def continuations(self, parent_id: str) -> list[ContinuationRecord]:
        rows = Continuation.objects.using(self.using).filter(parent_id=parent_id).order_by("id")
        return [continuation_record(row) for row in rows]

    def parents(self, child_id: str) -> list[ContinuationRecord]:
        rows = Continuation.objects.using(self.using).filter(child_id=child_id).order_by("id")
        return [continuation_record(row) for row in rows]

    # -- locks -------------------------------------------------------------------------

    def acquire_lock(self, job_id: str, holder: str, timeout: float) -> bool:
        now = utcnow()
        taken = self._jobs().filter(pk=job_id).filter(_free_q(holder, now)).update(
            **_lock_values(holder, now, now + timedelta(seconds=timeout)))
        return bool(taken) or self._missing(job_id)

    def heartbeat(self, job_id: str, holder: str, timeout: float) -> bool:
        now = utcnow()
        extended = self._jobs().filter(pk=job_id, lock_holder=holder).update(
            lock_heartbeat=now, lock_expires=now + timedelta(seconds=timeout))
        return bool(extended) or self._missing(job_id)

    def _missing(self, job_id: str) -> bool:
        """False if the job exists; JobNotFound if it does not."""
        if not self._jobs().filter(pk=job_id).exists():
            raise JobNotFound(f"no job {job_id}")
        return False

    def release_lock(self, job_id: str, holder: str) -> None:
        self._jobs().filter(pk=job_id, lock_holder=holder).update(
            lock_holder=None, lock_acquired=None, lock_heartbeat=None, lock_expires=None)

    def expired(self, now: datetime, states: Collection[str] = ("Executing",),
                limit: int = 100) -> list[JobRecord]:
        rows = (self._jobs().filter(state__in=list(states), kind=JobKind.CALLABLE.value)
                .filter(Q(lock_expires__isnull=True) | Q(lock_expires__lt=now))
                .order_by("modified")[:limit])
        return [job_record(row) for row in rows]

    def stalled(self, before: datetime, environment: str | None = None,
                limit: int = 100) -> list[JobRecord]:
        """A range of the ``(environment, state, modified)`` index; each candidate's
        current state (``(job, sequence)``, unique) says whether it is delayed."""
        jobs = self._jobs().filter(state__in=list(STALLED_STATES),
                                   kind=JobKind.CALLABLE.value, modified__lt=before)
        if environment is not None:
            jobs = jobs.filter(environment=environment)
        delay: Any = KeyTextTransform("delay_until", "data")
        if self.connection.vendor == "mysql":
            # MySQL/MariaDB parse no UTC offset; the engine stores delays in UTC.
            delay = Left(delay, 19)
        delayed = (JobState.objects.using(self.using)
                   .filter(job_id=OuterRef("pk"), sequence=OuterRef("sequence"))
                   .annotate(due=Cast(delay, models.DateTimeField()))
                   .filter(due__gte=before))
        rows = jobs.filter(~Exists(delayed)).order_by("modified")[:limit]  # index order
        return [job_record(row) for row in rows]

    # -- properties, data, logs, actions ----------------------------------------------

    def set_properties(self, job_id: str, properties: Mapping[str, Any]) -> None:
        rows = _property_rows(job_id, properties)
        with self._writing(job_id):
            self._upsert(JobProperty, rows, ["job", "name"], VALUE_COLUMNS)

    def properties(self, job_id: str) -> dict[str, Any]:
        rows = JobProperty.objects.using(self.using).filter(job_id=job_id).order_by("id")
        return {row.name: row.value for row in rows}

    def set_data(self, job_id: str, key: str, value: Any) -> None:
        with self._writing(job_id):
            self._upsert(JobData, [JobData(job_id=job_id, key=key, value=value)],
                         ["job", "key"], ["value"])

    def data(self, job_id: str) -> dict[str, Any]:
        rows = JobData.objects.using(self.using).filter(job_id=job_id).order_by("id")
        return {row.key: row.value for row in rows}

    def add_log(self, job_id: str, record: LogRecord) -> None:
        with self._writing(job_id):
            JobLog.objects.using(self.using).create(
                job_id=job_id, level=record.level, message=record.message,
                exception=record.exception, time=record.time)

    def logs(self, job_id: str, limit: int = 1000) -> list[LogRecord]:
        rows = JobLog.objects.using(self.using).filter(job_id=job_id).order_by("-id")[:limit]
        return [log_record(row) for row in reversed(list(rows))]

    def request_cancel(self, job_id: str) -> None:
        if not self._jobs().filter(pk=job_id).update(cancel_requested=utcnow()):
            raise JobNotFound(f"no job {job_id}")

    def cancel_requested(self, job_id: str) -> bool:
        return self._jobs().filter(pk=job_id, cancel_requested__isnull=False).exists()

    # -- query and retention -----------------------------------------------------------

    def search(self, query: JobQuery) -> list[JobRecord]:
        rows = filtered(query, self.using).order_by(*query.order_by)
        return [job_record(row) for row in rows[query.offset:query.offset + query.limit]]

    def count(self, query: JobQuery) -> int:
        return filtered(query, self.using).count()

    def summary(self, environment: str | None, since: datetime) -> StoreSummary:
        """Aggregate queries on the job table's indexes, not a scan in Python.

        One GROUP BY (queue, state) and one count of recent finishes; the oldest waiting
        job is one index probe per queue that has waiting jobs (``(queue, state,
        created)`` answers ``MIN(created)`` from its first entry), where a GROUP BY
        would read every Enqueued row.
        """
        jobs = self._jobs()
        if environment is not None:
            jobs = jobs.filter(environment=environment)
        out = StoreSummary()
        per_queue = jobs.order_by().values_list("queue", "state").annotate(n=Count("pk"))
        for queue, state, n in per_queue:
            out.states[state] = out.states.get(state, 0) + n
            out.queues.setdefault(queue, {})[state] = n
        out.finished_since = jobs.filter(state__in=["Succeeded", "Failed"],
                                         modified__gte=since).count()
        for queue, counts in sorted(out.queues.items()):
            if counts.get("Enqueued"):
                oldest = jobs.filter(queue=queue, state="Enqueued").aggregate(m=Min("created"))
                if oldest["m"] is not None:
                    out.oldest_waiting[queue] = oldest["m"]
        return out

    def search_and_lock(self, query: JobQuery, holder: str, timeout: float) -> list[JobRecord]:
        now = utcnow()
        expires = now + timedelta(seconds=timeout)
        with self._atomic():
            self._write_lock()
            jobs = filtered(query, self.using).filter(_free_q(holder, now))
            jobs = self._for_update(jobs.order_by(*query.order_by), skip_locked=True)
            rows = list(jobs[query.offset:query.offset + query.limit])
            if rows:
                self._jobs().filter(pk__in=[row.pk for row in rows]).update(
                    **_lock_values(holder, now, expires))
        for row in rows:
            if row.lock_holder != holder:
                row.lock_acquired = now
            row.lock_holder, row.lock_heartbeat, row.lock_expires = holder, now, expires
        return [job_record(row) for row in rows]

    def purge(self, states: Collection[str], before: datetime, environment: str | None = None,
              batch_size: int = 1000) -> int:
        doomed = self._jobs().filter(state__in=list(states), modified__lt=before)
        if environment is not None:
            doomed = doomed.filter(environment=environment)
        total = 0
        while True:
            with self._atomic():  # one short transaction per batch
                self._write_lock()
                batch = self._for_update(doomed, no_key=False, skip_locked=True)
                batch = batch.values_list("pk", flat=True)
                ids = list(batch[:batch_size])
                if not ids:
                    return total
                _, counts = self._jobs().filter(pk__in=ids).only("pk").delete()
                total += counts.get(Job._meta.label, 0)

    def on_commit(self, fn: Callable[[], Any]) -> None:
        transaction.on_commit(fn, using=self.using)

    # -- command events ----------------------------------------------------------------

    def record_events(self, events: Sequence[CommandEvent], environment: str) -> None:
        grouped = group_by_command(events)
        if not grouped:
            return
        attempts = 1 if self.connection.in_atomic_block else _DEADLOCK_RETRIES
        for attempt in range(1, attempts + 1):
            try:
                return self._record(grouped, environment)
            except OperationalError as exc:
                if attempt == attempts or not is_deadlock(exc.__cause__):
                    raise
                time.sleep(random.uniform(0.005, 0.02) * attempt)

    def _record(self, grouped: dict[str, list[CommandEvent]], environment: str) -> None:
        ids = sorted(grouped)  # every writer locks in id order
        with self._atomic():
            self._write_lock()
            # Lock the jobs that exist, then create the missing ones. (An INSERT that
            # hits an existing row would take a shared lock on it in MySQL, and two
            # writers upgrading shared locks deadlock.)
            rows = self._locked_rows(ids)
            missing = [cid for cid in ids if cid not in rows]
            if missing:
                self._jobs().bulk_create(
                    [command_row(grouped[cid][0], environment) for cid in missing],
                    ignore_conflicts=True)
                rows.update(self._locked_rows(missing))
            recorded = self._recorded_events(ids)
            history: list[JobState] = []
            for cid in ids:
                fresh = fresh_events(grouped[cid], recorded.get(cid, {}))
                if fresh:  # else every event is recorded already: a batch written again
                    history += self._place(rows[cid], fresh, recorded.get(cid, {}))
            JobState.objects.using(self.using).bulk_create(history)

    def _recorded_events(self, ids: list[str]) -> dict[str, dict[str, int]]:
        """Per job, the life order of each recorded event and its row's sequence."""
        found: dict[str, dict[str, int]] = {}
        rows = (JobState.objects.using(self.using)
                .filter(job_id__in=ids, life_order__isnull=False)
                .values_list("job_id", "life_order", "sequence"))
        for job_id, order, sequence in rows:
            found.setdefault(job_id, {})[order] = sequence
        return found

    def _place(self, row: Job, fresh: list[CommandEvent],
               recorded: dict[str, int]) -> list[JobState]:
        """Update the job row for new events; return their history rows, numbered.

        Events later in the life than all recorded ones are appended. A late write
        (an event earlier in the life than some recorded: the worker's PROCESSING
        written before the publisher's DISPATCHED, a requeue) is put in its place:
        the rows from there on are deleted and written again, renumbered, with it.
        """
        new = [event_row(row.pk, event) for event in fresh]
        first = min(state.life_order for state in new)
        later = [sequence for order, sequence in recorded.items() if order > first]
        if later:
            states = JobState.objects.using(self.using).filter(job_id=row.pk,
                                                               sequence__gte=min(later))
            tail = list(states.order_by("sequence"))
            states.delete()
            placed = in_life_order([(state.life_order, state) for state in tail],
                                   [(state.life_order, state) for state in new])
            start = tail[0].sequence
        else:
            placed = sorted(new, key=lambda state: state.life_order)
            start = row.sequence + 1
        for sequence, state in enumerate(placed, start):
            state.sequence = sequence
        update = apply_events(row, fresh)
        update["sequence"] = row.sequence + len(new)
        self._jobs().filter(pk=row.pk).update(**update)
        return placed

    def _locked_rows(self, ids: list[str]) -> dict[str, Job]:
        return {row.pk: row for row in
                self._for_update(self._jobs().filter(pk__in=ids).order_by("pk"))}


# -- helpers ----------------------------------------------------------------------------


_DEADLOCK_RETRIES = 5


def _free_q(holder: str, now: datetime) -> Q:
    """Rows whose lock ``holder`` may take: free, already theirs, or expired."""
    return Q(lock_holder__isnull=True) | Q(lock_holder=holder) | Q(lock_expires__lt=now)


def _lock_values(holder: str, now: datetime, expires: datetime) -> dict[str, Any]:
    # lock_acquired first: MySQL evaluates SET assignments left to right, so it must
    # read lock_holder before that column is overwritten.
    acquired = Case(When(lock_holder=holder, then=F("lock_acquired")),
                    default=Value(now, output_field=models.DateTimeField()),
                    output_field=models.DateTimeField())
    return {"lock_acquired": acquired, "lock_holder": holder, "lock_heartbeat": now,
            "lock_expires": expires}


def _property_rows(job_id: str, properties: Mapping[str, Any]) -> list[JobProperty]:
    return [JobProperty(job_id=job_id, name=name, **property_columns(property_value(name, value)))
            for name, value in properties.items()]
