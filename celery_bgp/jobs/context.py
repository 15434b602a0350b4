"""What a running job can ask for: its context (properties, data, logs) and cancellation.

Declare a parameter annotated ``JobContext`` (or named ``job_context``) and/or
``CancellationToken`` (or named ``cancellation``) and the worker passes them in;
they are not stored arguments.
"""
from __future__ import annotations

import logging
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any

from ..commands import utcnow
from ..exceptions import BGPError
from .model import JobRecord, LogRecord
from .progress import KEY as PROGRESS_KEY
from .progress import Progress

if TYPE_CHECKING:
    from .client import Jobs

__all__ = ["CancellationToken", "JobCancelled", "JobContext"]


class JobCancelled(BGPError):
    """Raised by :meth:`CancellationToken.raise_if_cancelled`; ends the job as Cancelled."""


class CancellationToken:
    """Set when the job is cancelled (checked on each heartbeat of the running job)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        self._event.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep up to ``timeout`` seconds, waking early on cancellation; True if cancelled."""
        return self._event.wait(timeout)

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise JobCancelled("the job was cancelled")


class JobContext:
    """The running job: its record, typed properties, data, persisted logs and progress."""

    #: :meth:`progress` writes at most once per this many seconds per job.
    PROGRESS_INTERVAL = 0.5

    #: Log records below this level are not persisted (``bgp_job_log_level``).
    def __init__(self, jobs: Jobs, job: JobRecord, cancellation: CancellationToken,
                 log_level: int = logging.INFO) -> None:
        self.jobs = jobs
        self.job = job
        self.cancellation = cancellation
        self.log_level = log_level
        self.input: Any = None  # the input of the per-job middleware being run
        self._logger = logging.getLogger(f"celery_bgp.jobs.{job.name.split(':')[0]}")
        self._progress_written = float("-inf")  # monotonic time of the last write
        self._progress_pending: Progress | None = None

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def properties(self) -> dict[str, Any]:
        """The job's properties as stored now."""
        return self.jobs.store.properties(self.job.id)

    def set_property(self, name: str, value: Any) -> None:
        """Set a typed, queryable property (text, int, float, bool, aware datetime)."""
        self.jobs.store.set_properties(self.job.id, {name: value})

    def get_data(self, key: str, default: Any = None) -> Any:
        return self.jobs.store.data(self.job.id).get(key, default)

    def set_data(self, key: str, value: Any) -> None:
        """Store a JSON value under ``key`` (progress, checkpoints ...)."""
        self.jobs.store.set_data(self.job.id, key, value)

    def progress(self, done: float, total: float | None = None,
                 message: str | None = None) -> None:
        """Report how far the job is: ``done`` of ``total`` (None: unknown), a message.

        Stored with the job (data key ``progress``: ``done``, ``total``, ``message``
        and ``at``, the time of the report), where the admin's list and job page show
        a bar and an ETA (the rate since the run started) and ``celery bgp`` shows it
        too. Cheap in a tight loop: one write at most every :attr:`PROGRESS_INTERVAL`
        seconds; a report in between is kept and written by the next call after the
        interval, or when the job ends, so the last value is never lost. A report that
        completes the total (``done >= total``) is written at once.
        """
        report = Progress(done, total, message, utcnow())
        now = time.monotonic()
        finished = total is not None and done >= total
        if not finished and now - self._progress_written < self.PROGRESS_INTERVAL:
            self._progress_pending = report
            return
        self._write_progress(report, now)

    def flush_progress(self) -> None:
        """Write a report :meth:`progress` held back (the worker calls it as the job ends);
        never raises: a progress write must not change how the job ends."""
        report = self._progress_pending
        if report is None:
            return
        try:
            self._write_progress(report, time.monotonic())
        except Exception:
            self._logger.warning("[%s] could not store the last progress report", self.id,
                                 exc_info=True)

    def _write_progress(self, report: Progress, now: float) -> None:
        self._progress_pending = None
        self._progress_written = now
        self.jobs.store.set_data(self.job.id, PROGRESS_KEY, report.to_json())

    def log(self, level: int | str, message: str, exc: BaseException | None = None) -> None:
        """Log through ``logging`` and persist with the job at or above ``log_level``."""
        if isinstance(level, str):
            level = logging.getLevelName(level.upper())
            if not isinstance(level, int):
                raise ValueError(f"unknown log level {level!r}")
        self._logger.log(level, "[%s] %s", self.job.id, message, exc_info=exc)
        if level >= self.log_level:
            text = "".join(traceback.format_exception(exc)) if exc is not None else None
            self.jobs.store.add_log(self.job.id, LogRecord(level, message, utcnow(), text))

    def info(self, message: str) -> None:
        self.log(logging.INFO, message)

    def warning(self, message: str) -> None:
        self.log(logging.WARNING, message)

    def error(self, message: str, exc: BaseException | None = None) -> None:
        self.log(logging.ERROR, message, exc)
