"""One thread per worker process that keeps running jobs' locks alive and fires their tokens.

A thread per job would cost a thread start per job; one shared thread extends
every running job's lock each ``timeout / 3`` seconds and checks whether someone
asked to cancel it. :meth:`Heartbeats.check_now` (called by :func:`wake_all`, from
the worker's cancel message, see :mod:`.cancelling`) makes it check the cancel
requests of every running job right away instead of at the next heartbeat.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from .context import CancellationToken

if TYPE_CHECKING:
    from .client import Jobs

__all__ = ["Heartbeats", "wake_all"]

logger = logging.getLogger("celery_bgp.jobs")

#: A job that starts this many seconds after a wake-up is checked too: the wake-up may
#: have been meant for it, sent between its Executing write and :meth:`Heartbeats.add`.
RECHECK_AFTER_WAKE = 10.0

#: Every Heartbeats of this process (one per ``bgp.jobs``), for :func:`wake_all`.
_ALL: weakref.WeakSet[Heartbeats] = weakref.WeakSet()


def wake_all() -> None:
    """Make every heartbeat thread of this process check its jobs' cancel requests now.

    Safe in a signal handler: it only sets flags and events, never waits for a lock
    the interrupted code may hold.
    """
    for heartbeats in list(_ALL):
        heartbeats.check_now()


class Heartbeats:
    """One thread per process that keeps the locks of running jobs alive.

    Every ``timeout / 3`` seconds per job it extends the lock and checks whether
    someone asked to cancel; a thread per job would cost a thread start per job.
    """

    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs
        self._lock = threading.Lock()
        self._running: dict[str, tuple[str, float, CancellationToken, float]] = {}
        self._wake = threading.Event()
        self._pid = -1
        self._thread: threading.Thread | None = None
        self._check = False  # set by check_now(): look at every job's cancel request
        self._woken = float("-inf")  # monotonic time of the last check_now()
        _ALL.add(self)

    def add(self, job_id: str, holder: str, timeout: float, token: CancellationToken) -> None:
        with self._lock:
            self._running[job_id] = (holder, timeout, token, time.monotonic() + timeout / 3)
            if time.monotonic() - self._woken < RECHECK_AFTER_WAKE:
                # A cancel sent as the job started must not wait for its heartbeat. Only
                # the flag (seen within a second): this thread setting the event could
                # deadlock with the wake-up signal's handler, which sets it too.
                self._check = True
            if self._pid != os.getpid() or self._thread is None or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="bgp-heartbeats",
                                                 daemon=True)
                self._thread.start()

    def remove(self, job_id: str) -> None:
        with self._lock:
            self._running.pop(job_id, None)

    def check_now(self) -> None:
        """Check whether someone asked to cancel a running job now, not at its heartbeat.

        Never cancels by itself: the thread asks the store about each job it runs, so
        a wake-up meant for a job this process has finished meanwhile does nothing.
        Called from a signal handler (:mod:`.cancelling`): this process's running job
        must never call it, or the handler could wait for the event's lock it holds.
        """
        self._woken = time.monotonic()
        self._check = True
        self._wake.set()

    def _check_cancels(self) -> None:
        with self._lock:
            running = [(job_id, entry[2]) for job_id, entry in self._running.items()]
        for job_id, token in running:
            if token.cancelled:
                continue
            try:
                if self.jobs.store.cancel_requested(job_id):
                    token.cancel()
            except Exception:
                logger.exception("celery-bgp: cancel check of job %s failed", job_id)
                _reset(self.jobs.store)

    def _run(self) -> None:
        store = self.jobs.store
        idle = False
        while True:
            self._wake.clear()
            if self._check:
                self._check = False
                self._check_cancels()
            with self._lock:
                due = [(job_id, entry) for job_id, entry in self._running.items()
                       if entry[3] <= time.monotonic()]
                soonest = min((e[3] for e in self._running.values()), default=None)
            for job_id, (holder, timeout, token, _) in due:
                try:
                    if not store.heartbeat(job_id, holder, timeout):
                        logger.warning("celery-bgp: job %s lost its lock", job_id)
                    if not token.cancelled and store.cancel_requested(job_id):
                        token.cancel()
                except store.unavailable as exc:
                    # Drop this thread's broken connection: the next beat opens a new
                    # one. (Else it fails for ever, and the job loses its lock.)
                    logger.warning("celery-bgp: heartbeat of job %s failed, the job store "
                                   "is unavailable: %r", job_id, exc)
                    _reset(store)
                except Exception:
                    logger.exception("celery-bgp: heartbeat of job %s failed", job_id)
                with self._lock:
                    if job_id in self._running:
                        self._running[job_id] = (holder, timeout, token,
                                                 time.monotonic() + timeout / 3)
            if soonest is None and not idle:
                store.on_idle()  # nothing running: give the database connection back
            idle = soonest is None
            if not due:
                wait = 1.0 if soonest is None else max(0.05, soonest - time.monotonic())
                self._wake.wait(min(wait, 1.0))


def _reset(store: Any) -> None:
    """Close the calling thread's store connection (a broken one is never reused)."""
    try:
        store.on_idle()
    except Exception:
        logger.debug("celery-bgp: closing the job store connection failed", exc_info=True)
