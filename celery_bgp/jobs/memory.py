"""In-memory job store for tests and development (one process, one lock)."""
from __future__ import annotations

import copy
import dataclasses
import threading
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from ..commands import utcnow
from ..events.model import CommandEvent
from ..events.repository import group_by_command
from ..priority import Priority
from .model import (
    ContinuationRecord,
    JobKind,
    JobRecord,
    LockInfo,
    LogRecord,
    On,
    StateRecord,
    Transition,
)
from .query import Condition, Group, JobQuery, Node, like_to_regex, property_value
from .recurring import RecurringRecord
from .store import (
    STALLED_STATES,
    JobExists,
    JobNotFound,
    JobStore,
    StateConflict,
    delayed_past,
    event_order,
    fresh_events,
    in_life_order,
    initial_states,
    state_from_event,
)

__all__ = ["MemoryJobStore", "matches"]

_CHANGEABLE = {"execution_id", "attempt", "worker", "result", "queue", "priority", "options"}


@dataclasses.dataclass
class _Entry:
    job: JobRecord
    states: list[StateRecord]
    properties: dict[str, Any] = dataclasses.field(default_factory=dict)
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    logs: list[LogRecord] = dataclasses.field(default_factory=list)
    cancel_for: str | None = None
    order: str = ""  # life order of the current state, for command jobs


class MemoryJobStore(JobStore):
    """Everything in dicts under one re-entrant lock; copies in and out."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._jobs: dict[str, _Entry] = {}
        self._continuations: dict[str, list[ContinuationRecord]] = {}
        self._recurring: dict[tuple[str, str], RecurringRecord] = {}

    # -- jobs and states ---------------------------------------------------------------

    def create(self, job: JobRecord, initial: StateRecord | Sequence[StateRecord],
               properties: Mapping[str, Any] | None = None) -> None:
        history = initial_states(job, initial)
        props = {k: property_value(k, v) for k, v in (properties or {}).items()}
        with self._lock:
            if job.id in self._jobs:
                raise JobExists(f"job {job.id} already exists")
            states = [dataclasses.replace(s, sequence=i) for i, s in enumerate(history, 1)]
            self._jobs[job.id] = _Entry(copy.deepcopy(job), states, props)

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            entry = self._jobs.get(job_id)
            return copy.deepcopy(entry.job) if entry else None

    def states(self, job_id: str) -> list[StateRecord]:
        with self._lock:
            entry = self._jobs.get(job_id)
            return list(entry.states) if entry else []

    def _entry(self, job_id: str) -> _Entry:
        entry = self._jobs.get(job_id)
        if entry is None:
            raise JobNotFound(f"no job {job_id}")
        return entry

    def transition(self, job_id: str, state: StateRecord, *,
                   expected: Collection[str] | None = None, holder: str | None = None,
                   changes: Mapping[str, Any] | None = None, take_lock: float | None = None,
                   release_lock: bool = False, continuations: bool = True,
                   durable: bool = True) -> Transition:
        if (take_lock is not None or release_lock) and holder is None:
            raise ValueError("take_lock and release_lock need a holder")
        with self._lock:
            entry = self._entry(job_id)
            job = entry.job
            if expected is not None and job.state not in expected:
                raise StateConflict(
                    f"job {job_id} is {job.state}, expected one of {sorted(expected)}"
                )
            if holder is not None and not _free_for(job.lock, holder, state.elected):
                raise StateConflict(f"job {job_id} is locked by {job.lock.holder}")
            unknown = set(changes or ()) - _CHANGEABLE
            if unknown:
                raise ValueError(f"cannot change {sorted(unknown)} in a transition")
            applied = dataclasses.replace(state, sequence=len(entry.states) + 1)
            previous = job.state
            entry.states.append(applied)
            job.state = state.name
            job.modified = state.elected
            for key, value in (changes or {}).items():
                setattr(job, key, copy.deepcopy(value))
            entry.order = ""
            if state.name == "Enqueued":
                entry.cancel_for = None
            if take_lock is not None:
                now = utcnow()
                acquired = job.lock.acquired if job.lock and job.lock.holder == holder else now
                job.lock = LockInfo(holder, acquired, now, now + timedelta(seconds=take_lock))
            elif release_lock and job.lock is not None and job.lock.holder == holder:
                job.lock = None
            found = tuple(self._continuations.get(job_id, ())) if continuations else ()
            return Transition(previous, applied, found)

    # -- continuations -----------------------------------------------------------------

    def add_continuation(self, parent_id: str, child_id: str, on: On,
                         delete_on_other: bool = False) -> str:
        with self._lock:
            parent = self._entry(parent_id)
            self._continuations.setdefault(parent_id, []).append(
                ContinuationRecord(parent_id, child_id, on, delete_on_other)
            )
            return parent.job.state

    def continuations(self, parent_id: str) -> list[ContinuationRecord]:
        with self._lock:
            return list(self._continuations.get(parent_id, ()))

    def parents(self, child_id: str) -> list[ContinuationRecord]:
        with self._lock:
            return [c for items in self._continuations.values() for c in items
                    if c.child_id == child_id]

    # -- locks -------------------------------------------------------------------------

    def acquire_lock(self, job_id: str, holder: str, timeout: float) -> bool:
        now = utcnow()
        with self._lock:
            job = self._entry(job_id).job
            if not _free_for(job.lock, holder, now):
                return False
            acquired = job.lock.acquired if job.lock and job.lock.holder == holder else now
            job.lock = LockInfo(holder, acquired, now, now + timedelta(seconds=timeout))
            return True

    def heartbeat(self, job_id: str, holder: str, timeout: float) -> bool:
        now = utcnow()
        with self._lock:
            job = self._entry(job_id).job
            if job.lock is None or job.lock.holder != holder:
                return False
            job.lock = dataclasses.replace(job.lock, heartbeat=now,
                                           expires=now + timedelta(seconds=timeout))
            return True

    def release_lock(self, job_id: str, holder: str) -> None:
        with self._lock:
            entry = self._jobs.get(job_id)
            if entry and entry.job.lock and entry.job.lock.holder == holder:
                entry.job.lock = None

    def expired(self, now: datetime, states: Collection[str] = ("Executing",),
                limit: int = 100) -> list[JobRecord]:
        with self._lock:
            found = [copy.deepcopy(e.job) for e in self._jobs.values()
                     if e.job.state in states and e.job.kind is JobKind.CALLABLE
                     and (e.job.lock is None or e.job.lock.expires < now)]
        return found[:limit]

    def stalled(self, before: datetime, environment: str | None = None,
                limit: int = 100) -> list[JobRecord]:
        with self._lock:
            found = [e for e in self._jobs.values()
                     if e.job.state in STALLED_STATES and e.job.kind is JobKind.CALLABLE
                     and e.job.modified < before
                     and (environment is None or e.job.environment == environment)
                     and not (e.states and delayed_past(e.states[-1], before))]
            found.sort(key=lambda e: (e.job.modified, e.job.id))
            return [copy.deepcopy(e.job) for e in found[:limit]]

    # -- properties, data, logs, actions ----------------------------------------------

    def set_properties(self, job_id: str, properties: Mapping[str, Any]) -> None:
        checked = {k: property_value(k, v) for k, v in properties.items()}
        with self._lock:
            self._entry(job_id).properties.update(checked)

    def properties(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            entry = self._jobs.get(job_id)
            return dict(entry.properties) if entry else {}

    def set_data(self, job_id: str, key: str, value: Any) -> None:
        with self._lock:
            self._entry(job_id).data[key] = copy.deepcopy(value)

    def data(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            entry = self._jobs.get(job_id)
            return copy.deepcopy(entry.data) if entry else {}

    def add_log(self, job_id: str, record: LogRecord) -> None:
        with self._lock:
            self._entry(job_id).logs.append(record)

    def logs(self, job_id: str, limit: int = 1000) -> list[LogRecord]:
        with self._lock:
            entry = self._jobs.get(job_id)
            return list(entry.logs[-limit:]) if entry else []

    def request_cancel(self, job_id: str) -> None:
        with self._lock:
            entry = self._entry(job_id)
            entry.cancel_for = entry.job.execution_id or ""

    def cancel_requested(self, job_id: str) -> bool:
        with self._lock:
            entry = self._jobs.get(job_id)
            return bool(entry) and entry.cancel_for is not None

    # -- query and retention -----------------------------------------------------------

    def _matching(self, query: JobQuery) -> list[_Entry]:
        found = [e for e in self._jobs.values()
                 if (query.environment is None or e.job.environment == query.environment)
                 and (query.where is None or matches(query.where, e))]
        for key in reversed(query.order_by):
            field = key.lstrip("-")
            found.sort(key=lambda e, f=field: getattr(e.job, f), reverse=key.startswith("-"))
        return found

    def search(self, query: JobQuery) -> list[JobRecord]:
        with self._lock:
            found = self._matching(query)[query.offset:query.offset + query.limit]
            return [copy.deepcopy(e.job) for e in found]

    def count(self, query: JobQuery) -> int:
        with self._lock:
            return len(self._matching(query))

    def search_and_lock(self, query: JobQuery, holder: str, timeout: float) -> list[JobRecord]:
        now = utcnow()
        with self._lock:
            free = [e for e in self._matching(query) if _free_for(e.job.lock, holder, now)]
            picked = free[query.offset:query.offset + query.limit]
            for entry in picked:
                self.acquire_lock(entry.job.id, holder, timeout)
            return [copy.deepcopy(e.job) for e in picked]

    def purge(self, states: Collection[str], before: datetime, environment: str | None = None,
              batch_size: int = 1000) -> int:
        with self._lock:
            doomed = [k for k, e in self._jobs.items()
                      if e.job.state in states and e.job.modified < before
                      and (environment is None or e.job.environment == environment)]
            for key in doomed:
                del self._jobs[key]
                self._continuations.pop(key, None)
            return len(doomed)

    # -- command events ----------------------------------------------------------------

    def record_events(self, events: Sequence[CommandEvent], environment: str) -> None:
        with self._lock:
            for command_id, batch in group_by_command(events).items():
                entry = self._jobs.get(command_id)
                if entry is None:
                    job = _command_job(batch[0], environment, state_from_event(batch[0]))
                    entry = self._jobs[job.id] = _Entry(job, [])
                history = [(event_order(s), s) for s in entry.states]
                fresh = fresh_events(batch, {key for key, _ in history if key is not None})
                if not fresh:
                    continue
                merged = in_life_order(history, [(e.order_text, state_from_event(e))
                                                 for e in fresh])
                entry.states = [dataclasses.replace(s, sequence=i)
                                for i, s in enumerate(merged, 1)]
                for event in fresh:
                    _apply_event(entry, event)

    # -- recurring jobs ----------------------------------------------------------------

    def recurring_records(self, environment: str, names: Collection[str] | None = None
                          ) -> dict[str, RecurringRecord]:
        with self._lock:
            return {name: dataclasses.replace(record)
                    for (env, name), record in sorted(self._recurring.items())
                    if env == environment and (names is None or name in names)}

    def _recurring_row(self, environment: str, name: str) -> RecurringRecord:
        return self._recurring.setdefault((environment, name),
                                          RecurringRecord(name, environment))

    def set_recurring_paused(self, environment: str, name: str, paused: bool, *,
                             by: str | None, at: datetime) -> RecurringRecord:
        with self._lock:
            record = self._recurring_row(environment, name)
            record.paused, record.paused_by, record.paused_at = paused, by, at
            return dataclasses.replace(record)

    def record_recurring_run(self, environment: str, name: str, *, job_id: str | None = None,
                             at: datetime | None = None, beat: datetime | None = None) -> None:
        with self._lock:
            record = self._recurring_row(environment, name)
            if job_id is not None:
                record.last_job, record.last_run = job_id, at
            if beat is not None:
                record.last_beat = beat

    def clear(self) -> None:
        """Forget everything (tests)."""
        with self._lock:
            self._jobs.clear()
            self._continuations.clear()
            self._recurring.clear()


def _apply_event(entry: _Entry, event: CommandEvent) -> None:
    """Update a command job's columns for one newly recorded event."""
    job = entry.job
    if event.command is not None and not job.args:
        job.args = [event.command]
    if event.queue and not job.queue:
        job.queue = event.queue
    if event.timestamp < job.created:
        job.created = event.timestamp
    if event.order_text > entry.order:
        entry.order = event.order_text
        job.state = state_from_event(event).name
        job.modified = event.timestamp
        if event.worker:
            job.worker = event.worker


def _command_job(event: CommandEvent, environment: str, state: StateRecord) -> JobRecord:
    return JobRecord(
        id=event.command_id,
        name=event.command_name or "?",
        kind=JobKind.COMMAND,
        queue=event.queue or "",
        priority=int(Priority.NORMAL),
        environment=environment,
        state=state.name,
        created=event.timestamp,
        modified=event.timestamp,
        args=[event.command] if event.command is not None else [],
    )


def _free_for(lock: LockInfo | None, holder: str, now: datetime) -> bool:
    return lock is None or lock.holder == holder or lock.expires < now


def matches(node: Node, entry: Any) -> bool:
    """Evaluate a query node against a stored entry (job, states, properties)."""
    if isinstance(node, Group):
        results = (matches(child, entry) for child in node.children)
        return all(results) if node.kind == "and" else any(results)
    assert isinstance(node, Condition)
    job: JobRecord = entry.job
    if node.prop is not None:
        if node.prop not in entry.properties:
            return False
        return _compare(entry.properties[node.prop], node.op, node.value, typed=True)
    if node.field == "past_state":
        names = {s.name for s in entry.states}
        return any(_compare(name, node.op, node.value) for name in names)
    if node.field == "locked_by":
        value = job.lock.holder if job.lock else None
    else:
        value = getattr(job, node.field)
        value = value.value if hasattr(value, "value") and node.field == "kind" else value
    return value is not None and _compare(value, node.op, node.value)


def _same_kind(a: Any, b: Any) -> bool:
    def kind(v: Any) -> str:
        if isinstance(v, bool):
            return "bool"
        if isinstance(v, (int, float)):
            return "number"
        return type(v).__name__

    return kind(a) == kind(b)


def _compare(actual: Any, op: str, expected: Any, typed: bool = False) -> bool:
    if op == "in":
        return any(_compare(actual, "eq", item, typed) for item in expected)
    if typed and not _same_kind(actual, expected):
        return False
    if op == "eq":
        return actual == expected
    if op == "like":
        return isinstance(actual, str) and bool(like_to_regex(expected).match(actual))
    try:
        return {"lt": actual < expected, "gt": actual > expected,
                "lte": actual <= expected, "gte": actual >= expected}[op]
    except TypeError:
        return False
