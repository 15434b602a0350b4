"""Runs one job on a worker: Executing (and the lock), middleware + callable, final state.

The message carries the job id and an execution id. A message whose execution id
is not the job's current one is stale (the job was requeued or recovered since)
and is dropped, as in HiveMind; so is one for a job that is no longer Enqueued.
Taking the lock and applying Executing is one write, and so is the final state
and the release: a job costs its worker two writes plus what it does itself. While
jobs run, :mod:`.heartbeats` extends their locks and fires their cancellation tokens.

When the job store cannot answer (its :attr:`~.store.JobStore.unavailable` errors:
connection refused or lost, a timeout), no job is lost:

- The read and the Executing write are tried again in the worker process for about two
  seconds (kombu's ``retry_over_time``); then the message is sent back with Celery's
  own retry (``task.retry``: exponential back-off with jitter, at most
  :data:`RETRY_BACKOFF_MAX` s between tries, as many tries as it takes), so the job
  runs once the store is back. The job stays Enqueued meanwhile.
- An Executing write whose answer was lost may have been applied: the job is then
  Executing, its lock taken by this worker and not extended, and lock-expiry recovery
  (:mod:`.monitor`) sends it again after ``bgp_job_lock_timeout``.
- The final state (and the lock's release) is tried for up to :data:`RECORD_PATIENCE`
  seconds while the worker keeps the outcome in memory. If the store is away longer,
  the job is left Executing and the task fails with :class:`JobStateNotRecorded`: when
  its lock expires, recovery runs it again (or fails it, per ``bgp_job_on_worker_lost``)
  - at least once, never silently lost.

Celery's own outcome of the ``bgp.job`` task follows the job's, so the worker's log
line, task signals and events tell the truth: a Succeeded job's task succeeds, a
Failed one raises :class:`JobFailed` (logged as a failure, with the job's exception as
its cause), a Cancelled one raises :class:`JobWasCancelled` (one of the task's expected
exceptions: logged at INFO, no traceback), and one that will be retried raises
Celery's ``Retry`` ("retry: Retry in 30s: ..."; the engine sends the next attempt's
message itself). None of them stores a result (``ignore_result``), retries or requeues
the message: it is acknowledged, as for any task that ran. Eager runs
(``task_always_eager``) and direct calls return as before: the outcome is in the store.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from celery.exceptions import Retry
from celery.utils.time import get_exponential_backoff_interval
from kombu.utils.functional import retry_over_time

from ..exceptions import BGPError
from .context import CancellationToken, JobCancelled
from .invocation import resolve
from .states import Cancelled, Executing, Failed, Retrying, State, Succeeded
from .store import StateConflict

if TYPE_CHECKING:
    from .client import Jobs
    from .machine import StateChange

__all__ = ["JobFailed", "JobOutcome", "JobStateNotRecorded", "JobWasCancelled", "run_job"]

logger = logging.getLogger("celery_bgp.jobs")

RUNNABLE = {"Enqueued", "Executing"}

#: Reading a job and writing Executing: tries after the first, in the worker process
#: (0.25 s, 0.75 s, 1 s apart), before the message is sent back.
QUICK_RETRIES = 3
#: Most seconds between two deliveries of a message whose job store is unavailable.
RETRY_BACKOFF_MAX = 30
#: Seconds a worker keeps trying to record a finished job's final state.
RECORD_PATIENCE = 120.0


class JobOutcome(BGPError):
    """Raised by the ``bgp.job`` task once the job's final state is recorded, so that
    Celery reports the job's outcome rather than "succeeded"."""


class JobFailed(JobOutcome):
    """The job ended Failed; the job's own exception, if any, is the ``__cause__``."""


class JobWasCancelled(JobOutcome):
    """The job ended Cancelled (an expected outcome of the ``bgp.job`` task)."""


class JobStateNotRecorded(BGPError):
    """The job ran, but its final state could not be written for
    :data:`RECORD_PATIENCE` seconds (the job store was unavailable). The job is left
    Executing; recovery runs it again when its lock expires."""


def run_job(jobs: Jobs, task: Any, job_id: str, execution_id: str) -> Any:
    """Body of the ``bgp.job`` task."""
    if _not_a_worker(task.request):
        return _run(jobs, task, job_id, execution_id)
    with jobs.store.session():  # e.g. a connection kept for the worker's next job
        return _run(jobs, task, job_id, execution_id)


def _run(jobs: Jobs, task: Any, job_id: str, execution_id: str) -> Any:
    try:
        job = _patiently(jobs, f"reading job {job_id}", lambda: jobs.store.get(job_id))
    except jobs.store.unavailable as exc:
        _send_back(task, job_id, "read", exc)
    if job is None:
        logger.warning("celery-bgp: job %s no longer exists; message dropped", job_id)
        return None
    if job.execution_id != execution_id or job.state not in RUNNABLE:
        logger.info("celery-bgp: stale message for job %s (%s, execution %s); dropped",
                    job_id, job.state, execution_id)
        return None
    worker = getattr(task.request, "hostname", None) or socket.gethostname()
    holder = f"{worker}/{os.getpid()}/{execution_id}"
    timeout = jobs.settings.job_lock_timeout
    attempt = job.attempt + 1

    def start() -> StateChange:
        return jobs.machine.change(
            job_id, Executing(worker=worker, execution_id=execution_id, attempt=attempt),
            holder=holder, expected=RUNNABLE, take_lock=timeout, job=job,
            changes={"attempt": attempt, "worker": worker}, durable=False,
        )

    with jobs.holding(job_id, holder) as hold:
        try:
            change = _patiently(jobs, f"starting job {job_id}", start)
        except StateConflict as exc:
            hold.release = False  # the lock was never ours
            logger.info("celery-bgp: job %s not started (duplicate or moved): %s", job_id, exc)
            return None
        except jobs.store.unavailable as exc:
            hold.release = False  # cannot be released now; a lock taken expires
            _send_back(task, job_id, "Executing write", exc)
        if not change.won:
            logger.info("celery-bgp: job %s was elected %s instead of Executing", job_id,
                        change.elected.name)
            return _outcome(task, job_id, change.elected, None, None)
        return _execute(jobs, task, change.job, holder, timeout, attempt, hold)


def _execute(jobs: Jobs, task: Any, job: Any, holder: str, timeout: float, attempt: int,
             hold: Any) -> Any:
    token = CancellationToken()
    context = jobs.context(job, token)
    started = time.monotonic()
    error: BaseException | None = None
    changes: dict[str, Any] | None = None
    stored: Any = None
    jobs.heartbeats.add(job.id, holder, timeout, token)
    try:
        invocation = resolve(job.name, jobs.settings.job_modules)
        invocation.check_arguments(job.args, job.kwargs)  # a stored row may not fit any more

        def final(ctx: Any) -> Any:
            return invocation.call(job.args, job.kwargs, activator=jobs.activator,
                                   context=ctx, cancellation=token)

        result = jobs.middleware.build(job.queue, job.middleware, final)(context)
    except JobCancelled as exc:
        state: State = Cancelled(reason=str(exc) or "cancelled")
    except Exception as exc:
        logger.info("celery-bgp: job %s attempt %d failed: %r", job.id, attempt, exc)
        state, error = Failed.from_exception(exc, attempt), exc
    else:
        stored = _jsonable(result)
        state = Succeeded(duration=round(time.monotonic() - started, 6), result=stored)
        changes = {"result": stored}
    finally:
        context.flush_progress()  # a progress report held back by its rate limit
        jobs.heartbeats.remove(job.id)
    elected = _finish(jobs, job, holder, hold, state, changes)
    return _outcome(task, job.id, elected, stored, error)


def _finish(jobs: Jobs, job: Any, holder: str, hold: Any, state: State,
            changes: dict[str, Any] | None = None) -> State | None:
    """Record the final state and release the lock; return the state elected, or None
    if the job was moved by someone else meanwhile."""
    # ``job`` is the record as this worker made it Executing: while the lock is ours
    # nobody else moves it, and the store re-checks state and holder in the write, so
    # the election needs no fresh read.
    job_id = job.id
    failures: list[BaseException] = []

    def write() -> StateChange:
        return jobs.machine.change(job_id, state, holder=holder, changes=changes, job=job,
                                   expected={"Executing"}, release_lock=True, durable=False)

    try:
        change = _patiently(jobs, f"recording job {job_id} {state.name}", write,
                            patience=RECORD_PATIENCE, failures=failures)
    except StateConflict as exc:
        if failures:  # the write whose answer was lost may be the one that moved it
            logger.warning("celery-bgp: job %s finished as %s; after a store error the job "
                           "is no longer Executing (%s): recorded by that write, or "
                           "recovered meanwhile", job_id, state.name, exc)
        else:  # recovered by the monitor (lock expired) or moved by hand meanwhile
            logger.warning("celery-bgp: job %s finished as %s but could not record it: %s",
                           job_id, state.name, exc)
        return None
    except jobs.store.unavailable as exc:
        hold.release = False
        logger.error("celery-bgp: job %s finished as %s, but the job store was unavailable "
                     "for %.0f s (%r): the job is left Executing and runs again when its "
                     "lock expires", job_id, state.name, RECORD_PATIENCE, exc)
        raise JobStateNotRecorded(
            f"job {job_id} finished as {state.name} but the job store was unavailable for "
            f"{RECORD_PATIENCE:.0f} s; it stays Executing until recovery") from exc
    hold.release = False  # released in the same write
    return change.elected


def _outcome(task: Any, job_id: str, elected: State | None, value: Any,
             error: BaseException | None) -> Any:
    """The task's return value, or the exception that makes Celery report the job's
    outcome (not in eager runs or direct calls: the caller reads the store)."""
    request = task.request
    if elected is None or _not_a_worker(request):
        return value
    if isinstance(elected, Failed):
        what = f"{elected.exception_type}: {elected.message}" if elected.exception_type \
            else (elected.reason or "failed")
        raise JobFailed(f"job {job_id} failed (attempt {elected.attempt}): {what}") from error
    if isinstance(elected, Cancelled):
        raise JobWasCancelled(f"job {job_id} cancelled: {elected.reason or 'cancelled'}")
    if isinstance(elected, Retrying):
        raise Retry(exc=error or elected.message or None, when=elected.delay)
    return value


def _not_a_worker(request: Any) -> bool:
    """True unless the task runs from a message (an eager run, a direct call, a test's
    stand-in request): then nothing is raised for the outcome or sent back."""
    return bool(getattr(request, "is_eager", False)
                or getattr(request, "called_directly", True))


def _patiently(jobs: Jobs, what: str, call: Callable[[], Any], *,
               patience: float | None = None,
               failures: list[BaseException] | None = None) -> Any:
    """``call()``, tried again while the store raises its ``unavailable`` errors: a few
    quick times (about 2 s), or for ``patience`` seconds with longer pauses (up to 5 s)."""
    store = jobs.store

    def reset() -> None:
        with contextlib.suppress(Exception):
            store.on_idle()  # drop a broken connection: the next try opens a new one

    def errback(exc: BaseException, intervals: Any, retries: int) -> float:
        if failures is not None:
            failures.append(exc)
        reset()
        pause = next(intervals)
        logger.warning("celery-bgp: job store unavailable while %s (%r); trying again in "
                       "%.2g s", what, exc, pause)
        return pause

    if patience is None:
        policy = {"max_retries": QUICK_RETRIES, "interval_start": 0.25,
                  "interval_step": 0.5, "interval_max": 1.0}
    else:
        policy = {"timeout": patience, "interval_start": 0.5, "interval_step": 1.0,
                  "interval_max": 5.0}
    try:
        return retry_over_time(call, store.unavailable, errback=errback, **policy)
    except store.unavailable:
        reset()  # the process's next task starts on a new connection
        raise


def _send_back(task: Any, job_id: str, what: str, exc: BaseException) -> NoReturn:
    """Give the message back to the broker (Celery retry with back-off): the job's
    store is unavailable, so it can be neither started nor dropped."""
    request = task.request
    if _not_a_worker(request):
        raise exc  # no broker to give it back to: the caller sees the store's error
    tries = int(getattr(request, "retries", 0) or 0)
    countdown = 1 + get_exponential_backoff_interval(1, tries, RETRY_BACKOFF_MAX,
                                                     full_jitter=True)
    logger.warning("celery-bgp: job %s: the job store is unavailable (%s: %r); message "
                   "sent back, next try in %d s", job_id, what, exc, countdown)
    raise task.retry(exc=exc, countdown=countdown)


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=False)
        return value
    except (TypeError, ValueError):
        return repr(value)[:1000]
