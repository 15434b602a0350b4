"""``bgp.jobs``: enqueue any allowed callable as a tracked job, steer it, query it.

Celery runs the jobs (one generic task, ``bgp.job``, whose message carries only the
job id and an execution id); the job store holds everything else. Every change of
state goes through the state machine, so election handlers, event handlers,
continuations and retries apply the same way to the engine and to an operator.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..commands import new_command_id, utcnow
from ..exceptions import BGPError, ImproperlyConfigured
from ..priority import Priority, broker_priority
from .context import JobContext
from .heartbeats import Heartbeats
from .invocation import InvalidJobArguments
from .machine import ELECT, STATE_APPLIED, Election, StateApplied, StateChange, StateMachine
from .mediator import Mediator
from .middleware import Middleware, MiddlewareRegistry
from .model import JobKind, JobRecord, LogRecord, On, StateRecord
from .query import JobQuery, Node
from .recurring import RecurringJobs
from .retry import RetryPolicy
from .states import (
    FINAL_STATES,
    Awaiting,
    Cancelled,
    Created,
    Deleted,
    Enqueued,
    Failed,
    Idle,
    Retrying,
    State,
    StateRegistry,
)
from .store import JobNotFound, JobStore, StateConflict

if TYPE_CHECKING:
    from ..processing import BackgroundProcessing
    from .cancelling import CancelResult

__all__ = ["JobLocked", "Jobs"]

logger = logging.getLogger("celery_bgp.jobs")

#: Priority of the built-in retry election handler; user handlers default to 100.
RETRY_PRIORITY = 1000


class JobLocked(BGPError):
    """The job is locked by someone else (usually: it is running)."""


class Jobs(RecurringJobs):
    """The jobs API of one :class:`~celery_bgp.BackgroundProcessing` (one environment)."""

    def __init__(self, bgp: BackgroundProcessing,
                 store: JobStore | Callable[[], JobStore]) -> None:
        self.bgp = bgp
        self._store_source = store
        self.mediator = Mediator()
        self.states = StateRegistry()
        self.middleware = MiddlewareRegistry()
        self.activator: Callable[[type], Any] = lambda cls: cls()
        self.recurring_jobs: dict[str, dict[str, Any]] = {}
        self._local = threading.local()
        self.heartbeats = Heartbeats(self)
        self.mediator.handle(ELECT, self._elect_retry, RETRY_PRIORITY)

    @functools.cached_property
    def store(self) -> JobStore:
        """The job store, opened on first use.

        Registering handlers, middleware, states and recurring jobs never touches it, so
        they can be declared at module level (``proj/celery.py``) before Django is ready.
        """
        source = self._store_source
        return source if isinstance(source, JobStore) else source()

    @functools.cached_property
    def machine(self) -> StateMachine:
        """The state machine over :attr:`store`."""
        machine = StateMachine(self.store, self.mediator, self.states)
        machine.after_applied.append(self._on_applied)
        return machine

    @property
    def environment(self) -> str:
        """The environment these jobs belong to: the instance's name."""
        return self.bgp.name

    @property
    def settings(self):
        return self.bgp.settings

    # -- enqueueing --------------------------------------------------------------------

    def enqueue(self, fn: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> str:
        """Run ``fn(*args, **kwargs)`` in the background; return the job id."""
        return self.submit(fn, args=args, kwargs=kwargs)

    def submit(
        self,
        fn: Callable[..., Any] | str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: Priority | int | str = Priority.NORMAL,
        delay: timedelta | float | None = None,
        delay_until: datetime | None = None,
        after: tuple[str, On | str] | tuple[str, On | str, bool] | None = None,
        properties: Mapping[str, Any] | None = None,
        middleware: Iterable[str | tuple[str, Any]] = (),
        retry: RetryPolicy | Mapping[str, Any] | int | None = None,
        idle: bool = False,
        job_id: str | None = None,
    ) -> str:
        """Create a job with options; return its id.

        ``after=(parent_id, "succeeded")`` (or ``On`` flags, optionally a third item
        ``delete_on_other``) makes it a continuation; ``idle=True`` stores it without
        queueing it. ``middleware`` names per-job middleware, each optionally with a
        JSON input: ``["audit", ("tenant", {"id": 7})]``.
        """
        from .invocation import callable_name, check_args, resolve

        name = callable_name(fn)
        invocation = resolve(name, self.settings.job_modules)  # allowed and importable
        args, kwargs = list(args), dict(kwargs or {})
        check_args(args, kwargs)
        invocation.check_arguments(args, kwargs)  # a wrong call fails here, not on a worker
        level = _priority(priority)
        attached = [_middleware_item(m) for m in middleware]
        options: dict[str, Any] = {}
        if retry is not None:
            options["retry"] = RetryPolicy.from_value(retry).to_dict()
        when = _delay_until(delay, delay_until)
        now = utcnow()
        job = JobRecord(
            id=job_id or new_command_id(), name=name, kind=JobKind.CALLABLE,
            queue=queue or self.bgp.app.conf.task_default_queue, priority=int(level),
            environment=self.environment, state=Created.name, created=now, modified=now,
            args=args, kwargs=kwargs, middleware=attached, options=options,
        )
        parent = _parse_after(after) if after is not None else None
        if parent is not None:
            if self.store.get(parent[0]) is None:
                raise JobNotFound(f"continuation parent {parent[0]} does not exist")
            self._await(job, *parent, properties)
        elif idle:
            self.machine.create(job, Idle(reason="created idle"), properties)
        else:
            self.machine.create(job, Enqueued(delay_until=when), properties,
                                changes={"execution_id": uuid.uuid4().hex})
        return job.id

    def _await(self, job: JobRecord, parent_id: str, on: On, delete_on_other: bool,
               properties: Mapping[str, Any] | None) -> None:
        change = self.machine.create(job, Awaiting(parent_id=parent_id, on=on.to_text(),
                                                   delete_on_other=delete_on_other), properties)
        if change.elected.name != Awaiting.name:
            return
        parent_state = self.store.add_continuation(parent_id, job.id, on, delete_on_other)
        self._release(job.id, parent_id, parent_state, on, delete_on_other)

    def _release(self, child_id: str, parent_id: str, parent_state: str, on: On,
                 delete_on_other: bool) -> None:
        try:
            if on.matches(parent_state):
                self._enqueue(child_id, Enqueued(reason=f"parent {parent_id} is {parent_state}"),
                              expected={Awaiting.name})
            elif delete_on_other and parent_state in FINAL_STATES:
                self.machine.change(child_id, Deleted(
                    reason=f"parent {parent_id} ended {parent_state}"), expected={Awaiting.name})
        except StateConflict:
            pass  # released (or moved) by someone else already

    def _enqueue(self, job_id: str, state: Enqueued, **kw: Any) -> StateChange:
        changes = {"execution_id": uuid.uuid4().hex, **kw.pop("changes", {})}
        return self.machine.change(job_id, state, changes=changes, **kw)

    # -- the engine's own handlers -----------------------------------------------------

    def _on_applied(self, applied: StateApplied) -> None:
        name = applied.state.name
        if name == Enqueued.name and applied.job.kind is JobKind.CALLABLE:
            job, when = applied.job, applied.state.delay_until
            self._after_release(lambda: self._publish(job, when))
        elif name == Retrying.name:
            delay = applied.state.delay
            self._enqueue(applied.job.id, Enqueued(
                delay_until=utcnow() + timedelta(seconds=delay),
                reason=f"retry {applied.state.attempt + 1} in {delay:g}s"),
                expected={Retrying.name})
        for cont in applied.transition.continuations:
            try:  # one child that cannot move must not keep its siblings waiting
                self._release(cont.child_id, cont.parent_id, name, cont.on,
                              cont.delete_on_other)
            except Exception:
                logger.exception("celery-bgp: continuation %s of job %s not released",
                                 cont.child_id, cont.parent_id)

    def _elect_retry(self, election: Election) -> State | None:
        candidate = election.candidate
        if not isinstance(candidate, Failed) or candidate.exception is None:
            return None
        if isinstance(candidate.exception, (ImproperlyConfigured, InvalidJobArguments)):
            # Not allowed, not importable, arguments that do not bind, unknown
            # middleware: retrying won't help.
            return None
        policy = self.retry_policy(election.job)
        if not policy.should_retry(candidate.exception, candidate.attempt):
            return None
        return Retrying(attempt=candidate.attempt, delay=policy.delay_for(candidate.attempt),
                        exception_type=candidate.exception_type, message=candidate.message,
                        reason=f"attempt {candidate.attempt} of {policy.max_attempts} failed")

    def retry_policy(self, job: JobRecord) -> RetryPolicy:
        """The job's own policy, else ``bgp_job_retry``, else the default."""
        value = job.options.get("retry") or self.settings.job_retry
        return RetryPolicy.from_value(value) if value is not None else RetryPolicy()

    @contextlib.contextmanager
    def holding(self, job_id: str, holder: str) -> Iterator[_Hold]:
        """Release ``holder``'s lock on exit, then send the messages queued meanwhile.

        A message sent while the lock is held could reach a worker before the
        release; that worker would find the job locked and drop its message, and
        the job would wait forever. So publications wait for the release. Set
        ``hold.release = False`` when the lock was already released (or never taken).
        """
        outer = getattr(self._local, "pending", None)
        hold = _Hold()
        self._local.pending = hold.pending
        try:
            yield hold
        finally:
            self._local.pending = outer
            if hold.release:
                self.store.release_lock(job_id, holder)
            for publish in hold.pending:
                self._after_release(publish)

    def transaction(self, bind: Any) -> contextlib.AbstractContextManager[Any]:
        """``with bgp.jobs.transaction(connection_or_session):`` job writes in the block
        join the caller's SQLAlchemy transaction; their messages go to the broker after
        its commit, never after a rollback (SQLAlchemy store). The Django store needs no
        block: ``transaction.atomic()`` does this already."""
        join = getattr(self.store, "transaction", None)
        if join is None:
            raise ImproperlyConfigured(
                f"{type(self.store).__name__} does not join SQLAlchemy transactions "
                "(the Django store follows transaction.atomic() by itself)")
        return join(bind)

    def _after_release(self, publish: Callable[[], Any]) -> None:
        pending = getattr(self._local, "pending", None)
        if pending is not None:
            pending.append(publish)
        else:
            self.store.on_commit(publish)

    def _publish(self, job: JobRecord, delay_until: datetime | None) -> None:
        """Send the job's message: only its id and execution id travel."""
        task = self.bgp.job_task
        options: dict[str, Any] = {
            "task_id": job.id,
            "queue": job.queue,
            "shadow": job.name,
            # Not the "bgp" header of commands: that one makes the publish a command event.
            "headers": {"bgp_job": self.bgp.name},
            "serializer": "json",
            # What Celery's saferepr would show, without its pass over the arguments.
            "argsrepr": f"({job.id!r}, {job.execution_id!r})",
            "kwargsrepr": "{}",
        }
        level = broker_priority(Priority(job.priority), self.bgp.transport)
        if level is not None:
            options["priority"] = level
        if delay_until is not None and delay_until > utcnow():
            options["eta"] = delay_until
        task.apply_async((job.id, job.execution_id), **options)

    # -- steering by hand (through the machine, under the job's lock) -----------------

    def change_state(self, job_id: str, state: State, expected: Iterable[str] | None = None,
                     changes: dict[str, Any] | None = None) -> StateChange:
        """Apply ``state`` by hand, holding the job's lock while doing it."""
        holder = f"hand:{uuid.uuid4().hex}"
        if not self.store.acquire_lock(job_id, holder, timeout=30):
            job = self.store.get(job_id)
            who = job.lock.holder if job and job.lock else "?"
            raise JobLocked(f"job {job_id} is locked by {who}")
        with self.holding(job_id, holder):
            return self.machine.change(job_id, state, holder=holder, changes=changes,
                                       expected=set(expected) if expected else None)

    def requeue(self, job_id: str, reason: str = "requeued by hand") -> StateChange | None:
        """Enqueue a finished or idle job again (commands are re-dispatched)."""
        job = self._get(job_id)
        if job.kind is JobKind.COMMAND:
            self.bgp.redispatch(job)
            return None
        return self.change_state(job_id, Enqueued(reason=reason),
                                 changes={"execution_id": uuid.uuid4().hex})

    def delete(self, job_id: str, reason: str = "deleted by hand") -> StateChange:
        """Move a job to Deleted (it will not run; retention removes it later)."""
        return self.change_state(job_id, Deleted(reason=reason))

    def cancel(self, job_id: str, reason: str = "cancelled by hand",
               terminate: bool = False) -> CancelResult:
        """Cancel a waiting job now, or ask a running one to stop.

        A waiting job becomes Cancelled now (``result.requested`` is False). For a
        running one the request is stored, then sent to the workers on Celery's control
        channel: the job's cancellation token fires within about a second (at its next
        heartbeat, every ``job_lock_timeout / 3`` s, if the message is lost), and the job
        ends Cancelled when its code stops (``raise_if_cancelled``, ``JobCancelled``).
        ``result.requested`` is True: it is not Cancelled yet, and a job that finishes
        first keeps its final state. ``terminate=True`` also kills the process that runs
        it (SIGTERM, prefork pool), for code that ignores its token; the job is then
        recorded Cancelled. Commands are revoked (``terminate`` as in Celery).
        """
        from .cancelling import CancelResult, send_cancel

        job = self._get(job_id)
        if job.kind is JobKind.COMMAND:
            self.store.request_cancel(job_id)
            self.bgp.app.control.revoke(job_id, terminate=terminate)
            return CancelResult(job_id, job.state, requested=True, terminate=terminate)
        if job.state != "Executing":
            try:
                change = self.change_state(job_id, Cancelled(reason=reason))
                return CancelResult(job_id, change.elected.name, requested=False, change=change)
            except (JobLocked, StateConflict):
                job = self._get(job_id)
                if job.state != "Executing":  # not started by a worker meanwhile
                    raise
        self.store.request_cancel(job_id)
        self.store.on_commit(lambda: send_cancel(self.bgp, job_id, terminate))
        return CancelResult(job_id, job.state, requested=True, terminate=terminate)

    # -- reading -----------------------------------------------------------------------

    def _get(self, job_id: str) -> JobRecord:
        job = self.store.get(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id}")
        return job

    def get(self, job_id: str) -> JobRecord | None:
        """The job record (state, lock, attempt, result ...), or None."""
        return self.store.get(job_id)

    def history(self, job_id: str) -> list[StateRecord]:
        """The state history, oldest first."""
        return self.store.states(job_id)

    def logs(self, job_id: str, limit: int = 1000) -> list[LogRecord]:
        """The job's persisted log records, oldest first."""
        return self.store.logs(job_id, limit)

    def properties(self, job_id: str) -> dict[str, Any]:
        """The job's typed, queryable properties."""
        return self.store.properties(job_id)

    def data(self, job_id: str) -> dict[str, Any]:
        """The job's data (key -> JSON value), as its context set them."""
        return self.store.data(job_id)

    def search(self, where: Node | None = None, *, order_by: Sequence[str] = ("-created",),
               limit: int = 100, offset: int = 0, all_environments: bool = False
               ) -> list[JobRecord]:
        """Jobs of this environment matching ``where`` (see :mod:`celery_bgp.jobs.query`)."""
        return self.store.search(self._query(where, order_by, limit, offset, all_environments))

    def count(self, where: Node | None = None, *, all_environments: bool = False) -> int:
        return self.store.count(self._query(where, ("-created",), 1, 0, all_environments))

    def search_and_lock(self, where: Node | None, holder: str, *, timeout: float | None = None,
                        limit: int = 100) -> list[JobRecord]:
        """Search and lock what was found (skipping jobs others hold)."""
        return self.store.search_and_lock(self._query(where, ("-created",), limit, 0, False),
                                          holder, timeout or self.settings.job_lock_timeout)

    def _query(self, where, order_by, limit, offset, all_environments) -> JobQuery:
        env = None if all_environments else self.environment
        return JobQuery(where, tuple(order_by), limit, offset, env)

    def wait(self, job_id: str, timeout: float = 30.0, states: Iterable[str] | None = None,
             interval: float = 0.05) -> JobRecord:
        """Poll until the job is in one of ``states`` (default: a final state)."""
        import time

        wanted = set(states or FINAL_STATES)
        deadline = time.monotonic() + timeout
        while True:
            job = self.store.get(job_id)
            if job is not None and job.state in wanted:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is {job.state if job else 'missing'} after "
                                   f"{timeout}s, not one of {sorted(wanted)}")
            time.sleep(interval)

    # -- extension points --------------------------------------------------------------

    def election_handler(self, fn: Callable[[Election], State | None] | None = None, *,
                         priority: int = 100):
        """Register ``fn(election) -> State | None``; lower ``priority`` runs first."""
        def register(handler):
            self.mediator.handle(ELECT, handler, priority)
            return handler
        return register(fn) if fn is not None else register

    def on_state(self, fn: Callable[[StateApplied], Any] | None = None, *,
                 states: Iterable[str] | None = None):
        """Register ``fn(applied)`` for every applied state (or only ``states``)."""
        wanted = set(states) if states is not None else None

        def register(handler):
            def filtered(applied: StateApplied) -> None:
                if wanted is None or applied.state.name in wanted:
                    handler(applied)
            self.mediator.subscribe(STATE_APPLIED, filtered)
            return handler
        return register(fn) if fn is not None else register

    def use(self, fn: Middleware, queues: Iterable[str] | None = None) -> Middleware:
        """Worker middleware ``fn(context, call_next)`` around every job (or some queues')."""
        return self.middleware.use(fn, queues)

    def register_middleware(self, name: str, fn: Middleware | None = None):
        """Per-job middleware, attachable at enqueue by ``name``."""
        if fn is not None:
            return self.middleware.register(name, fn)
        return lambda f: self.middleware.register(name, f)

    def context(self, job: JobRecord, cancellation: Any) -> JobContext:
        return JobContext(self, job, cancellation, self.settings.job_log_level)


class _Hold:
    """State of one :meth:`Jobs.holding` block."""

    def __init__(self) -> None:
        self.release = True
        self.pending: list[Callable[[], Any]] = []


def _priority(value: Priority | int | str) -> Priority:
    if isinstance(value, Priority):
        return value
    if isinstance(value, str):
        try:
            return Priority[value.upper()]
        except KeyError:
            raise ImproperlyConfigured(f"unknown priority {value!r}") from None
    return Priority(int(value))


def _middleware_item(item: str | tuple[str, Any]) -> dict[str, Any]:
    if isinstance(item, str):
        return {"name": item, "input": None}
    name, value = item
    return {"name": str(name), "input": value}


def _delay_until(delay: timedelta | float | None, until: datetime | None) -> datetime | None:
    if delay is not None and until is not None:
        raise ImproperlyConfigured("pass delay or delay_until, not both")
    if delay is not None:
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
        return utcnow() + timedelta(seconds=seconds)
    if until is not None and until.tzinfo is None:
        raise ImproperlyConfigured("delay_until must be timezone-aware")
    return until


def _parse_after(after: tuple) -> tuple[str, On, bool]:
    if len(after) == 2:
        parent, on = after
        delete = False
    elif len(after) == 3:
        parent, on, delete = after
    else:
        raise ImproperlyConfigured("after= is (parent_id, on) or (parent_id, on, delete_on_other)")
    return str(parent), On.parse(on), bool(delete)

