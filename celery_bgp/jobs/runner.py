"""Runs one job on a worker: Executing (and the lock), middleware + callable, final state.

The message carries the job id and an execution id. A message whose execution id
is not the job's current one is stale (the job was requeued or recovered since)
and is dropped, as in HiveMind; so is one for a job that is no longer Enqueued.
Taking the lock and applying Executing is one write, and so is the final state
and the release: a job costs its worker two writes plus what it does itself. While
jobs run, :mod:`.heartbeats` extends their locks and fires their cancellation tokens.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any

from .context import CancellationToken, JobCancelled
from .invocation import resolve
from .states import Cancelled, Executing, Failed, Succeeded
from .store import StateConflict

if TYPE_CHECKING:
    from .client import Jobs

__all__ = ["run_job"]

logger = logging.getLogger("celery_bgp.jobs")

RUNNABLE = {"Enqueued", "Executing"}


def run_job(jobs: Jobs, task: Any, job_id: str, execution_id: str) -> Any:
    """Body of the ``bgp.job`` task."""
    job = jobs.store.get(job_id)
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
    with jobs.holding(job_id, holder) as hold:
        try:
            change = jobs.machine.change(
                job_id, Executing(worker=worker, execution_id=execution_id, attempt=attempt),
                holder=holder, expected=RUNNABLE, take_lock=timeout, job=job,
                changes={"attempt": attempt, "worker": worker}, durable=False,
            )
        except StateConflict as exc:
            hold.release = False  # the lock was never ours
            logger.info("celery-bgp: job %s not started (duplicate or moved): %s", job_id, exc)
            return None
        if not change.won:
            logger.info("celery-bgp: job %s was elected %s instead of Executing", job_id,
                        change.elected.name)
            return None
        return _execute(jobs, change.job, holder, timeout, attempt, hold)


def _execute(jobs: Jobs, job: Any, holder: str, timeout: float, attempt: int,
             hold: Any) -> Any:
    token = CancellationToken()
    context = jobs.context(job, token)
    started = time.monotonic()
    jobs.heartbeats.add(job.id, holder, timeout, token)
    try:
        invocation = resolve(job.name, jobs.settings.job_modules)
        invocation.check_arguments(job.args, job.kwargs)  # a stored row may not fit any more

        def final(ctx: Any) -> Any:
            return invocation.call(job.args, job.kwargs, activator=jobs.activator,
                                   context=ctx, cancellation=token)

        result = jobs.middleware.build(job.queue, job.middleware, final)(context)
    except JobCancelled as exc:
        return _finish(jobs, job, holder, hold, Cancelled(reason=str(exc) or "cancelled"))
    except Exception as exc:
        logger.info("celery-bgp: job %s attempt %d failed: %r", job.id, attempt, exc)
        return _finish(jobs, job, holder, hold, Failed.from_exception(exc, attempt))
    finally:
        jobs.heartbeats.remove(job.id)
    stored = _jsonable(result)
    return _finish(jobs, job, holder, hold,
                   Succeeded(duration=round(time.monotonic() - started, 6), result=stored),
                   changes={"result": stored}, value=stored)


def _finish(jobs: Jobs, job: Any, holder: str, hold: Any, state: Any,
            changes: dict[str, Any] | None = None, value: Any = None) -> Any:
    # ``job`` is the record as this worker made it Executing: while the lock is ours
    # nobody else moves it, and the store re-checks state and holder in the write, so
    # the election needs no fresh read.
    job_id = job.id
    try:
        jobs.machine.change(job_id, state, holder=holder, changes=changes, job=job,
                            expected={"Executing"}, release_lock=True, durable=False)
        hold.release = False  # released in the same write
    except StateConflict as exc:
        # Recovered by the monitor (lock expired) or moved by hand meanwhile.
        logger.warning("celery-bgp: job %s finished as %s but could not record it: %s",
                       job_id, state.name, exc)
    return value


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=False)
        return value
    except (TypeError, ValueError):
        return repr(value)[:1000]
