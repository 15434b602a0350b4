"""A job's reported progress: the stored record, its percentage and its ETA.

:meth:`JobContext.progress <celery_bgp.jobs.context.JobContext.progress>` writes it
under the job data key :data:`KEY` as JSON (``done``, ``total``, ``message``, ``at``:
when it was reported, ISO 8601 UTC); the admin and ``celery bgp`` read it back with
:func:`read_progress`. The ETA is the rate so far (``done`` over the time from the
run's start to ``at``) applied to what is left, so it needs no extra writes.
"""
from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any

__all__ = ["KEY", "Progress", "read_progress", "shown_progress"]

#: The job data key progress is stored under.
KEY = "progress"


@dataclasses.dataclass(frozen=True)
class Progress:
    """One progress report: ``done`` of ``total`` (unknown when None), a message, when."""

    done: float
    total: float | None = None
    message: str | None = None
    at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        # Always with microseconds: stored times compare as text (the admin's probe).
        at = (self.at.astimezone(timezone.utc).isoformat(timespec="microseconds")
              if self.at else None)
        return {"done": self.done, "total": self.total, "message": self.message, "at": at}

    @property
    def fraction(self) -> float | None:
        """``done / total`` clamped to 0..1, or None when the total is unknown."""
        if not self.total or self.total <= 0:
            return None
        return min(max(self.done / self.total, 0.0), 1.0)

    @property
    def percent(self) -> int | None:
        fraction = self.fraction
        return None if fraction is None else int(fraction * 100)

    def of_run(self, started: datetime | None) -> bool:
        """Whether this report is of the run that started at ``started`` (a requeued job
        keeps its last run's report until the new run reports)."""
        return started is None or self.at is None or self.at >= started

    def eta(self, started: datetime | None) -> datetime | None:
        """When the run should end at the rate so far (None without a total, a start or
        any work done yet)."""
        if self.fraction is None or started is None or self.at is None or self.done <= 0:
            return None
        spent = (self.at - started).total_seconds()
        if spent < 0:
            return None
        left = max(self.total - self.done, 0.0)  # type: ignore[operator]
        return self.at + timedelta(seconds=spent * left / self.done)

    def remaining(self, started: datetime | None, now: datetime) -> float | None:
        """Seconds left from ``now`` (0 when overdue), or None when unknown."""
        eta = self.eta(started)
        return None if eta is None else max((eta - now).total_seconds(), 0.0)

    def as_dict(self, started: datetime | None, now: datetime) -> dict[str, Any]:
        """The record plus ``percent``, ``eta`` and ``remaining_seconds`` (the CLI's JSON)."""
        eta = self.eta(started)
        return {**self.to_json(), "percent": self.percent,
                "eta": eta.isoformat() if eta else None,
                "remaining_seconds": self.remaining(started, now)}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def read_progress(value: Any) -> Progress | None:
    """The :class:`Progress` of a stored data value, or None when it is not one
    (a job that stores its own ``progress`` shape is shown as raw data instead)."""
    if not isinstance(value, dict):
        return None
    done = _number(value.get("done"))
    if done is None:
        return None
    at = None
    if isinstance(value.get("at"), str):
        try:
            at = datetime.fromisoformat(value["at"])
        except ValueError:
            at = None
        if at is not None and at.tzinfo is None:
            at = at.replace(tzinfo=timezone.utc)
    message = value.get("message")
    return Progress(done, _number(value.get("total")),
                    message if isinstance(message, str) else None, at)


def shown_progress(value: Any, state: str, started: datetime | None) -> Progress | None:
    """The report to show for a job in ``state`` whose last run started at ``started``:
    the running job's, or how far a finished job got; none while it waits again (a
    requeued job's last report is of its last run)."""
    from .states import FINAL_STATES

    report = read_progress(value)
    if report is None or not report.of_run(started):
        return None
    return report if state == "Executing" or state in FINAL_STATES else None
