"""Runs one job on a worker: lock, Executing, middleware + callable, final state.

The message carries the job id and an execution id. A message whose execution id
is not the job's current one is stale (the job was requeued or recovered since)
and is dropped, as in HiveMind; so is one for a job that is no longer Enqueued.
While the job runs, a heartbeat thread extends its lock and fires the
cancellation token when someone asked to cancel.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from .context import CancellationToken, JobCancelled
from .invocation import resolve
from .states import Cancelled, Executing, Failed, Succeeded
from .store import StateConflict

if TYPE_CHECKING:
    from .client import Jobs

__all__ = ["Heartbeat", "run_job"]

logger = logging.getLogger("celery_bgp.jobs")

RUNNABLE = {"Enqueued", "Executing"}


class Heartbeat:
    """Extends the job's lock every ``timeout / 3`` s and watches for cancellation."""

    def __init__(self, jobs: Jobs, job_id: str, holder: str, timeout: float,
                 token: CancellationToken) -> None:
        self.jobs, self.job_id, self.holder = jobs, job_id, holder
        self.timeout, self.token = timeout, token
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"bgp-heartbeat-{job_id}",
                                        daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        store = self.jobs.store
        interval = max(0.2, self.timeout / 3)
        while not self._stop.wait(interval):
            try:
                if not store.heartbeat(self.job_id, self.holder, self.timeout):
                    logger.warning("celery-bgp: job %s lost its lock", self.job_id)
                if store.cancel_requested(self.job_id):
                    self.token.cancel()
            except Exception:
                logger.exception("celery-bgp: heartbeat of job %s failed", self.job_id)


def run_job(jobs: Jobs, task: Any, job_id: str, execution_id: str) -> Any:
    """Body of the ``bgp.job`` task."""
    store = jobs.store
    job = store.get(job_id)
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
    if not store.acquire_lock(job_id, holder, timeout):
        logger.info("celery-bgp: job %s is held by another worker; duplicate dropped", job_id)
        return None
    with jobs.holding(job_id, holder):
        return _execute(jobs, job_id, holder, worker, execution_id, timeout)


def _execute(jobs: Jobs, job_id: str, holder: str, worker: str, execution_id: str,
             timeout: float) -> Any:
    job = jobs.store.get(job_id)
    attempt = job.attempt + 1
    try:
        change = jobs.machine.change(
            job_id, Executing(worker=worker, execution_id=execution_id, attempt=attempt),
            holder=holder, expected=RUNNABLE, changes={"attempt": attempt, "worker": worker},
            job=job,
        )
    except StateConflict as exc:
        logger.info("celery-bgp: job %s not started: %s", job_id, exc)
        return None
    if not change.won:
        logger.info("celery-bgp: job %s was elected %s instead of Executing", job_id,
                    change.elected.name)
        return None
    token = CancellationToken()
    context = jobs.context(change.job, token)
    started = time.monotonic()
    with Heartbeat(jobs, job_id, holder, timeout, token):
        try:
            invocation = resolve(job.name, jobs.settings.job_modules)

            def final(ctx: Any) -> Any:
                return invocation.call(job.args, job.kwargs, activator=jobs.activator,
                                       context=ctx, cancellation=token)

            result = jobs.middleware.build(job.queue, job.middleware, final)(context)
        except JobCancelled as exc:
            return _finish(jobs, job_id, holder, Cancelled(reason=str(exc) or "cancelled"))
        except Exception as exc:
            logger.info("celery-bgp: job %s attempt %d failed: %r", job_id, attempt, exc)
            return _finish(jobs, job_id, holder, Failed.from_exception(exc, attempt))
    stored = _jsonable(result)
    return _finish(jobs, job_id, holder,
                   Succeeded(duration=round(time.monotonic() - started, 6), result=stored),
                   changes={"result": stored}, value=stored)


def _finish(jobs: Jobs, job_id: str, holder: str, state: Any,
            changes: dict[str, Any] | None = None, value: Any = None) -> Any:
    try:
        jobs.machine.change(job_id, state, holder=holder, changes=changes,
                            expected={"Executing"})
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
