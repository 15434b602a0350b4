"""Conversions between ORM rows and the store's plain records, and command events to rows.

``apply_events`` (how events move a command job's columns) is shared with the
SQLAlchemy store: :mod:`celery_bgp.jobs.relational`.
"""
from __future__ import annotations

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
from celery_bgp.jobs.relational import apply_events
from celery_bgp.jobs.store import state_from_event
from celery_bgp.priority import Priority

from .models import Continuation, Job, JobLog, JobState

__all__ = [
    "apply_events",
    "command_row",
    "continuation_record",
    "event_row",
    "job_record",
    "job_row",
    "log_record",
    "state_record",
    "state_row",
]

#: Job columns a record carries (what ``search``/``get`` load).
RECORD_FIELDS = (
    "id", "name", "kind", "queue", "priority", "environment", "state", "created",
    "modified", "args", "kwargs", "middleware", "options", "result", "execution_id",
    "attempt", "worker", "lock_holder", "lock_acquired", "lock_heartbeat", "lock_expires",
)


def job_record(row: Job) -> JobRecord:
    """The plain record of a job row."""
    lock = None
    if row.lock_holder is not None:
        lock = LockInfo(row.lock_holder, row.lock_acquired, row.lock_heartbeat,
                        row.lock_expires)
    return JobRecord(
        id=row.id, name=row.name, kind=JobKind(row.kind), queue=row.queue,
        priority=row.priority, environment=row.environment, state=row.state,
        created=row.created, modified=row.modified, args=row.args, kwargs=row.kwargs,
        middleware=row.middleware, options=row.options, execution_id=row.execution_id,
        attempt=row.attempt, worker=row.worker, result=row.result, lock=lock,
    )


def job_row(job: JobRecord, sequence: int = 1) -> Job:
    """An unsaved row for a new job whose history has ``sequence`` states."""
    lock = job.lock
    return Job(
        id=job.id, name=job.name, kind=JobKind(job.kind).value, queue=job.queue,
        priority=int(job.priority), environment=job.environment, state=job.state,
        created=job.created, modified=job.modified, args=list(job.args),
        kwargs=dict(job.kwargs), middleware=list(job.middleware), options=dict(job.options),
        result=job.result, execution_id=job.execution_id, attempt=job.attempt,
        worker=job.worker, lock_holder=lock.holder if lock else None,
        lock_acquired=lock.acquired if lock else None,
        lock_heartbeat=lock.heartbeat if lock else None,
        lock_expires=lock.expires if lock else None, sequence=sequence,
    )


def state_row(job_id: str, state: StateRecord, sequence: int,
              life_order: str | None = None) -> JobState:
    """An unsaved history row (``life_order``: the command event it records, if any)."""
    return JobState(job_id=job_id, sequence=sequence, name=state.name, elected=state.elected,
                    reason=state.reason, data=dict(state.data), life_order=life_order)


def state_record(row: JobState) -> StateRecord:
    return StateRecord(row.name, row.elected, row.reason, row.data or {}, row.sequence)


def log_record(row: JobLog) -> LogRecord:
    return LogRecord(row.level, row.message, row.time, row.exception)


def continuation_record(row: Continuation) -> ContinuationRecord:
    on = On.parse(row.on) if row.on else On(0)
    return ContinuationRecord(row.parent_id, row.child_id, on, row.delete_on_other)


def command_row(first: CommandEvent, environment: str) -> Job:
    """The row a command's first recorded event creates (events then update it)."""
    return Job(
        id=first.command_id, name=first.command_name or "?", kind=JobKind.COMMAND.value,
        queue=first.queue or "", priority=int(Priority.NORMAL), environment=environment,
        state=state_from_event(first).name, created=first.timestamp,
        modified=first.timestamp, args=[], sequence=0, order="",
    )


def event_row(job_id: str, event: CommandEvent) -> JobState:
    """An unsaved history row recording ``event`` (its sequence is set when placed)."""
    return state_row(job_id, state_from_event(event), 0, event.order_text)
