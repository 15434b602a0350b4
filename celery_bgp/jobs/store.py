"""The job store contract: what the engine, the admin and the query API rely on.

Two implementations ship: :class:`~celery_bgp.jobs.memory.MemoryJobStore` (tests,
development) and the Django ORM store in ``celery_bgp.contrib.django``. Both pass the
same contract suite (``tests/jobs/test_store_contract.py``).

Atomicity the engine depends on:

- :meth:`transition` and :meth:`add_continuation` on the same parent are serialized
  (a row lock in SQL), so a continuation attached while its parent finishes is
  either seen by the parent's transition or sees the parent's new state: never lost.
- :meth:`transition` checks ``expected`` and the lock holder in the same atomic step
  as the write (optimistic concurrency on the current state).
- :meth:`acquire_lock` is atomic: two holders never both get a free lock.

Commands (typed, dispatched with ``bgp.dispatch``) become jobs through
:meth:`record_events`: each command event is exactly one state, the history lists them
in the command's life order and the current state is the newest by that order,
whatever order the writes land in; recording an event again (a retried batch, a second
writer) changes nothing.
"""
from __future__ import annotations

import abc
import contextlib
import dataclasses
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar

from ..events.model import CommandEvent, ErrorInfo, EventStatus, life_order
from ..events.repository import EventRepository
from ..exceptions import BGPError
from .model import ContinuationRecord, JobRecord, LogRecord, On, StateRecord, Transition
from .query import JobQuery, Q
from .recurring import RecurringRecord

__all__ = [
    "EVENT_STATES",
    "STALLED_STATES",
    "JobExists",
    "JobNotFound",
    "JobStore",
    "JobStoreEvents",
    "StateConflict",
    "StoreSummary",
    "delay_of",
    "delayed_past",
    "event_from_state",
    "event_order",
    "fresh_events",
    "in_life_order",
    "initial_states",
    "state_from_event",
]


class JobNotFound(BGPError, LookupError):
    """No job with that id (in this store)."""


class JobExists(BGPError):
    """A job with that id already exists."""


class StateConflict(BGPError):
    """The job is not in an expected state, or another holder has its lock."""


#: Command event status -> job state name.
EVENT_STATES = {
    EventStatus.DISPATCHED: "Enqueued",
    EventStatus.PROCESSING: "Executing",
    EventStatus.RETRYING: "Retrying",
    EventStatus.PROCESSED: "Succeeded",
    EventStatus.ERROR: "Failed",
    EventStatus.CANCELLED: "Cancelled",
}


def state_from_event(event: CommandEvent) -> StateRecord:
    """The job state that records a command event (the event is kept in its data)."""
    data: dict[str, Any] = {"event": event.status.value}
    if event.retries:
        data["retries"] = event.retries
    if event.requeues:
        data["requeues"] = event.requeues
    if event.worker:
        data["worker"] = event.worker
    if event.error is not None:
        data["exception_type"] = event.error.type
        data["message"] = event.error.message
        data["traceback"] = event.error.traceback
    return StateRecord(EVENT_STATES[event.status], event.timestamp, event.reason, data)


def event_from_state(job: JobRecord, state: StateRecord) -> CommandEvent | None:
    """The command event a state records, or None for states the engine applied."""
    status = state.data.get("event")
    if status is None:
        return None
    error = None
    if state.data.get("exception_type") is not None:
        error = ErrorInfo(state.data["exception_type"], state.data.get("message", ""),
                          state.data.get("traceback"))
    return CommandEvent(
        command_id=job.id,
        status=EventStatus(status),
        timestamp=state.elected,
        command_name=job.name,
        command=job.args[0] if status == "DISPATCHED" and job.args else None,
        error=error,
        worker=state.data.get("worker"),
        retries=int(state.data.get("retries", 0)),
        reason=state.reason,
        queue=job.queue if status == "DISPATCHED" else None,
        requeues=int(state.data.get("requeues", 0)),
    )


def event_order(state: StateRecord) -> str | None:
    """The life order (:attr:`CommandEvent.order_text`) of a state that records a command
    event; None for a state the engine applied (or one it cannot read)."""
    status = state.data.get("event")
    if status is None:
        return None
    try:
        return life_order(int(state.data.get("requeues", 0)), int(state.data.get("retries", 0)),
                          state.elected, EventStatus(status))
    except (TypeError, ValueError):
        return None


def initial_states(job: JobRecord, initial: StateRecord | Sequence[StateRecord]
                   ) -> list[StateRecord]:
    """A new job's first states, checked: every store's ``create`` starts here."""
    history = [initial] if isinstance(initial, StateRecord) else list(initial)
    if not history or job.state != history[-1].name:
        raise ValueError("job.state must be the last initial state's name")
    return history


def fresh_events(events: Iterable[CommandEvent], recorded: Collection[str]) -> list[CommandEvent]:
    """``events`` not recorded yet (their :attr:`~CommandEvent.order_text` is not in
    ``recorded``), each once: what makes recording events idempotent."""
    seen = set(recorded)
    fresh = []
    for event in events:
        key = event.order_text
        if key not in seen:
            seen.add(key)
            fresh.append(event)
    return fresh


_T = TypeVar("_T")


def in_life_order(history: Iterable[tuple[str | None, _T]],
                  new: Iterable[tuple[str, _T]]) -> list[_T]:
    """Merge new event states into a history (oldest first) that is in life order.

    ``history`` and ``new`` are ``(life order, state)`` pairs; a history state the
    engine applied has None and keeps its place. Each new state goes just before the
    first recorded event that comes later in the command's life, the others at the end.
    """
    pending = sorted(new, key=lambda pair: pair[0])
    merged: list[_T] = []
    i = 0
    for key, state in history:
        if key is not None:
            while i < len(pending) and pending[i][0] < key:
                merged.append(pending[i][1])
                i += 1
        merged.append(state)
    merged.extend(state for _, state in pending[i:])
    return merged


MAX_PAGE = 10_000
#: States in which a job waits for a message the engine sends (see JobStore.stalled).
STALLED_STATES = ("Enqueued", "Retrying")


@dataclasses.dataclass
class StoreSummary:
    """What a dashboard shows about a store (see :meth:`JobStore.summary`)."""

    states: dict[str, int] = dataclasses.field(default_factory=dict)
    queues: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    finished_since: int = 0
    oldest_waiting: dict[str, datetime] = dataclasses.field(default_factory=dict)

    def add(self, job: JobRecord, since: datetime) -> None:
        """Count one job (used by the fallback and the memory store)."""
        self.states[job.state] = self.states.get(job.state, 0) + 1
        per_queue = self.queues.setdefault(job.queue, {})
        per_queue[job.state] = per_queue.get(job.state, 0) + 1
        if job.state in ("Succeeded", "Failed") and job.modified >= since:
            self.finished_since += 1
        if job.state == "Enqueued":
            oldest = self.oldest_waiting.get(job.queue)
            if oldest is None or job.created < oldest:
                self.oldest_waiting[job.queue] = job.created


class JobStore(abc.ABC):
    """Persistent jobs: records, state history, properties, data, logs, locks."""

    #: Exceptions that mean "the store cannot answer right now" (connection refused or
    #: lost, server restarting, a timeout). The worker retries the job's read and writes
    #: on these and never drops a job's message over them (:mod:`.runner`); any other
    #: exception is a real error. Stores add their driver's classes.
    unavailable: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)

    # -- jobs and states ---------------------------------------------------------------

    @abc.abstractmethod
    def create(self, job: JobRecord, initial: StateRecord | Sequence[StateRecord],
               properties: Mapping[str, Any] | None = None) -> None:
        """Insert a job with its first state, or its first states in order, in one step.

        ``job.state`` is the name of the last one. Raises :class:`JobExists` if the id
        is taken.
        """

    @abc.abstractmethod
    def get(self, job_id: str) -> JobRecord | None:
        """The job, or None."""

    @abc.abstractmethod
    def states(self, job_id: str) -> list[StateRecord]:
        """The state history, oldest first (by sequence)."""

    @abc.abstractmethod
    def transition(
        self,
        job_id: str,
        state: StateRecord,
        *,
        expected: Collection[str] | None = None,
        holder: str | None = None,
        changes: Mapping[str, Any] | None = None,
        take_lock: float | None = None,
        release_lock: bool = False,
        continuations: bool = True,
        durable: bool = True,
    ) -> Transition:
        """Apply ``state`` atomically and return what happened.

        Raises :class:`JobNotFound`; raises :class:`StateConflict` if ``expected`` is
        given and the current state is not in it, or if ``holder`` is given and
        another holder has an unexpired lock. ``changes`` updates JobRecord fields
        (``execution_id``, ``attempt``, ``worker``, ``result``, ``queue``,
        ``priority``, ``options``) in the same step. With ``holder``, ``take_lock``
        (seconds) also takes or extends the lock and ``release_lock`` releases it, in
        the same step (a worker starts and finishes a job in one write each). The
        returned transition lists the job's continuations (as parent) as registered at
        that moment, unless ``continuations`` is False (the state releases none).
        ``durable=False`` lets a store commit without waiting for its log to reach disk
        (PostgreSQL's asynchronous commit): a database crash may then forget the last
        fraction of a second of such transitions, never corrupt them. The runner uses
        it for Executing and for final states, where a forgotten write means a job is
        run again (at least once), not lost.
        """

    # -- continuations -----------------------------------------------------------------

    @abc.abstractmethod
    def add_continuation(self, parent_id: str, child_id: str, on: On,
                         delete_on_other: bool = False) -> str:
        """Record a continuation; return the parent's current state, read atomically."""

    @abc.abstractmethod
    def continuations(self, parent_id: str) -> list[ContinuationRecord]:
        """Continuations waiting on ``parent_id``."""

    @abc.abstractmethod
    def parents(self, child_id: str) -> list[ContinuationRecord]:
        """Continuations ``child_id`` waits on."""

    # -- locks -------------------------------------------------------------------------

    @abc.abstractmethod
    def acquire_lock(self, job_id: str, holder: str, timeout: float) -> bool:
        """Take the lock if free, expired or already ``holder``'s; False otherwise."""

    @abc.abstractmethod
    def heartbeat(self, job_id: str, holder: str, timeout: float) -> bool:
        """Extend ``holder``'s lock by ``timeout`` seconds; False if not the holder."""

    @abc.abstractmethod
    def release_lock(self, job_id: str, holder: str) -> None:
        """Release ``holder``'s lock (no-op if someone else holds it)."""

    @abc.abstractmethod
    def expired(self, now: datetime, states: Collection[str] = ("Executing",),
                limit: int = 100) -> list[JobRecord]:
        """Callable jobs in ``states`` whose lock expired before ``now`` (or that have none).

        Command jobs are left out: they hold no lock (Celery runs them), so a long
        command is not "lost" when it runs longer than a lock timeout.
        """

    def stalled(self, before: datetime, environment: str | None = None,
                limit: int = 100) -> list[JobRecord]:
        """Callable jobs waiting, since before ``before``, for a message that may never
        come; oldest first.

        Enqueued jobs whose current state was applied before ``before`` (``modified``)
        and whose ``delay_until``, if they have one, is before ``before`` too (a job
        delayed to later is not stalled, however long ago it was enqueued), and Retrying
        jobs applied before ``before`` (Retrying lasts only until the engine enqueues
        the next attempt, so an old one missed that write). The monitor sends them
        again (see :func:`.monitor.resend_stalled`).

        Stores should answer this from an index on (environment, state, modified);
        this fallback pages through :meth:`search` and reads each candidate's
        current state.
        """
        where = Q(state__in=list(STALLED_STATES), kind="callable", modified__lt=before)
        found: list[JobRecord] = []
        offset = 0
        while len(found) < limit:
            page = self.search(JobQuery(where, ("modified", "id"), MAX_PAGE, offset,
                                        environment))
            for job in page:
                history = self.states(job.id)
                if not history or not delayed_past(history[-1], before):
                    found.append(job)
            if len(page) < MAX_PAGE:
                break
            offset += MAX_PAGE
        return found[:limit]

    # -- properties, data, logs, actions ----------------------------------------------

    @abc.abstractmethod
    def set_properties(self, job_id: str, properties: Mapping[str, Any]) -> None:
        """Set typed properties (text, int, float, bool, aware datetime)."""

    @abc.abstractmethod
    def properties(self, job_id: str) -> dict[str, Any]:
        """All properties of a job."""

    @abc.abstractmethod
    def set_data(self, job_id: str, key: str, value: Any) -> None:
        """Set one JSON data item."""

    @abc.abstractmethod
    def data(self, job_id: str) -> dict[str, Any]:
        """All data items of a job."""

    @abc.abstractmethod
    def add_log(self, job_id: str, record: LogRecord) -> None:
        """Append a log line."""

    @abc.abstractmethod
    def logs(self, job_id: str, limit: int = 1000) -> list[LogRecord]:
        """Log lines, oldest first (the last ``limit``)."""

    @abc.abstractmethod
    def request_cancel(self, job_id: str) -> None:
        """Ask a running job to stop (its cancellation token fires)."""

    @abc.abstractmethod
    def cancel_requested(self, job_id: str) -> bool:
        """True once :meth:`request_cancel` was called for the current execution."""

    # -- query and retention -----------------------------------------------------------

    @abc.abstractmethod
    def search(self, query: JobQuery) -> list[JobRecord]:
        """Jobs matching ``query``, ordered and paged as it says."""

    @abc.abstractmethod
    def count(self, query: JobQuery) -> int:
        """Number of jobs matching ``query`` (order and paging ignored)."""

    @abc.abstractmethod
    def search_and_lock(self, query: JobQuery, holder: str, timeout: float) -> list[JobRecord]:
        """Like :meth:`search`, skipping locked jobs, and lock what it returns."""

    @abc.abstractmethod
    def purge(self, states: Collection[str], before: datetime, environment: str | None = None,
              batch_size: int = 1000) -> int:
        """Delete jobs in ``states`` last modified before ``before``, batch by batch."""

    def summary(self, environment: str | None, since: datetime) -> StoreSummary:
        """Counts for dashboards: per state, per queue and state, finished since ``since``,
        and the oldest Enqueued job per queue. Stores should override this with
        aggregate queries; this fallback pages through :meth:`search`."""
        out = StoreSummary()
        offset = 0
        while True:
            page = self.search(JobQuery(order_by=("id",), limit=MAX_PAGE, offset=offset,
                                        environment=environment))
            for job in page:
                out.add(job, since)
            if len(page) < MAX_PAGE:
                return out
            offset += MAX_PAGE

    def on_commit(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` once the surrounding transaction commits (now if there is none)."""
        fn()

    # -- recurring jobs ----------------------------------------------------------------

    @abc.abstractmethod
    def recurring_records(self, environment: str, names: Collection[str] | None = None
                          ) -> dict[str, RecurringRecord]:
        """The stored records of recurring jobs (all of ``environment``, or ``names``)."""

    @abc.abstractmethod
    def set_recurring_paused(self, environment: str, name: str, paused: bool, *,
                             by: str | None, at: datetime) -> RecurringRecord:
        """Pause or resume a recurring job (``by`` whom, ``at`` when); return its record.

        One row per (environment, name), created on first use; the run fields are kept.
        """

    @abc.abstractmethod
    def record_recurring_run(self, environment: str, name: str, *, job_id: str | None = None,
                             at: datetime | None = None, beat: datetime | None = None) -> None:
        """Remember a run: its job (``job_id`` enqueued ``at``) and/or beat's send time
        (``beat``); the pause fields are kept. A single upsert: it runs on every run."""

    def set_beat_entry_enabled(self, entry: str, enabled: bool) -> bool:
        """Enable or disable beat's stored copy of an entry, where the store has one
        (django-celery-beat's ``PeriodicTask`` for the Django store); True if it did."""
        return False

    # -- command events ----------------------------------------------------------------

    @abc.abstractmethod
    def record_events(self, events: Sequence[CommandEvent], environment: str) -> None:
        """Record command events as job states, creating command jobs as needed.

        Each event is one state, placed in the history by the command's life order
        (:attr:`CommandEvent.sort_key`), not by arrival: a late write goes before the
        recorded events that come after it in the life (:func:`in_life_order`), and the
        sequences are numbered again from there. An event already recorded (same
        :attr:`~CommandEvent.order_text`) is skipped, so a batch written twice (a retry
        after a lost commit acknowledgement, a second writer) records it once. The
        current state becomes the state of the newest event by that order among all
        recorded for the job.
        """

    def events(self, command_id: str) -> list[CommandEvent]:
        """The command events recorded for a job, newest first."""
        job = self.get(command_id)
        if job is None:
            return []
        found = [e for e in (event_from_state(job, s) for s in self.states(command_id)) if e]
        return sorted(found, key=lambda e: e.sort_key, reverse=True)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""

    def on_idle(self) -> None:  # noqa: B027 - optional hook
        """The calling thread will not use the store for a while (see EventRepository)."""

    def session(self) -> contextlib.AbstractContextManager[None]:
        """Around one job's run on a worker: a store may keep what it opens for the
        worker's next job (the Django store keeps a connection: Celery closes Django's
        after each task)."""
        return contextlib.nullcontext()


class JobStoreEvents(EventRepository):
    """An :class:`EventRepository` view of a job store, for one environment.

    ``event_repository="django-db://"`` uses it, so commands show up as jobs.
    """

    expiry = None

    def __init__(self, store: JobStore, environment: str = "default") -> None:
        self.store = store
        self.environment = environment
        # The store knows which of its errors blame one event (a SQL store: IntegrityError).
        self.event_errors = getattr(store, "event_errors", EventRepository.event_errors)

    def add_many(self, events: Sequence[CommandEvent]) -> None:
        self.store.record_events(events, self.environment)

    def on_idle(self) -> None:
        self.store.on_idle()

    def all(self, command_id: str) -> list[CommandEvent]:
        return self.store.events(command_id)


def delay_of(state: StateRecord) -> datetime | None:
    """The ``delay_until`` an Enqueued state carries (aware), or None."""
    value = state.data.get("delay_until") if state.name == "Enqueued" else None
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


def delayed_past(state: StateRecord, moment: datetime) -> bool:
    """True if ``state`` is an Enqueued state delayed to ``moment`` or later."""
    when = delay_of(state)
    return when is not None and when >= moment


def chunks(items: Iterable[Any], size: int) -> Iterable[list[Any]]:
    """Split ``items`` into lists of at most ``size``."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
