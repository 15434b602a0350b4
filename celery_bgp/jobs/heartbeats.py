"""One thread per worker process that keeps running jobs' locks alive and fires their tokens.

A thread per job would cost a thread start per job; one shared thread extends
every running job's lock each ``timeout / 3`` seconds and checks whether someone
asked to cancel it.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING

from .context import CancellationToken

if TYPE_CHECKING:
    from .client import Jobs

__all__ = ["Heartbeats"]

logger = logging.getLogger("celery_bgp.jobs")


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

    def add(self, job_id: str, holder: str, timeout: float, token: CancellationToken) -> None:
        with self._lock:
            self._running[job_id] = (holder, timeout, token, time.monotonic() + timeout / 3)
            if self._pid != os.getpid() or self._thread is None or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="bgp-heartbeats",
                                                 daemon=True)
                self._thread.start()

    def remove(self, job_id: str) -> None:
        with self._lock:
            self._running.pop(job_id, None)

    def _run(self) -> None:
        store = self.jobs.store
        idle = False
        while True:
            with self._lock:
                due = [(job_id, entry) for job_id, entry in self._running.items()
                       if entry[3] <= time.monotonic()]
                soonest = min((e[3] for e in self._running.values()), default=None)
            for job_id, (holder, timeout, token, _) in due:
                try:
                    if not store.heartbeat(job_id, holder, timeout):
                        logger.warning("celery-bgp: job %s lost its lock", job_id)
                    if store.cancel_requested(job_id):
                        token.cancel()
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
