"""What beat will do, for people: schedules in words, next runs, the last run of each.

:func:`overview` lists the recurring jobs declared in this process (``bgp.jobs.recurring``)
and the app's other beat entries, for the admin console and the CLI. The last run of a
recurring job comes from its stored record (:class:`~.recurring.RecurringRecord`: one
query for all of them, then one for their jobs); a job not run since that record
existed falls back to its newest job with the property ``recurring=<name>``. The next
run is beat's own arithmetic (``remaining_estimate``) from the last time beat ran it.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from celery.schedules import crontab, maybe_schedule, schedule

from ..commands import utcnow
from .model import JobRecord
from .query import P, Q
from .recurring import RecurringRecord

if TYPE_CHECKING:
    from .client import Jobs

__all__ = ["ScheduleRow", "describe", "next_run", "overview"]


@dataclasses.dataclass
class ScheduleRow:
    """One beat entry as an operator sees it."""

    entry: str
    task: str
    every: str
    #: The recurring job's name; None for the app's other beat entries (read-only).
    name: str | None = None
    schedule: Any = None
    next_run: datetime | None = None
    #: True when beat has missed a run it will make at its next tick.
    due: bool = False
    last_run: datetime | None = None
    last_job: JobRecord | None = None
    record: RecurringRecord | None = None

    @property
    def paused(self) -> bool:
        return bool(self.record and self.record.paused)


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


def _every(seconds: float) -> str:
    if seconds <= 0:
        return "all the time"
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"every {unit}" if count == 1 else f"every {_plural(count, unit)}"
    if seconds < 60:
        shown = f"{seconds:g}"
        return "every second" if seconds == 1 else f"every {shown} seconds"
    return f"every {timedelta(seconds=round(seconds))}"


def _cron_words(c: crontab) -> str:
    minute, hour = str(c._orig_minute), str(c._orig_hour)
    dom, month, dow = (str(c._orig_day_of_month), str(c._orig_month_of_year),
                       str(c._orig_day_of_week))
    if minute.isdigit() and hour.isdigit():
        when = f"at {int(hour):02d}:{int(minute):02d}"
    elif minute == "*" and hour == "*":
        when = "every minute"
    elif minute.startswith("*/") and hour == "*":
        when = f"every {minute[2:]} minutes"
    elif minute.isdigit() and hour == "*":
        when = f"at minute {minute} of every hour"
    else:
        when = f"minute {minute}, hour {hour}"
    days = []
    if dow != "*":
        days.append(f"on {dow}")
    if dom != "*":
        days.append(f"on day {dom} of the month")
    if month != "*":
        days.append(f"in month {month}")
    if not days and (minute.isdigit() and hour.isdigit()):
        days.append("every day")
    return f"{' '.join([when, *days])} (cron {minute} {hour} {dom} {month} {dow})"


def describe(value: Any) -> str:
    """A schedule in words: ``every 30 seconds``, ``at 03:00 every day (cron ...)``."""
    if isinstance(value, crontab):
        return _cron_words(value)
    if isinstance(value, schedule):
        return _every(value.run_every.total_seconds())
    event = getattr(value, "event", None)
    if event is not None and hasattr(value, "lat"):  # celery.schedules.solar
        return f"at {event} at {value.lat}, {value.lon}"
    return str(value)


def _interval(value: Any) -> bool:
    return isinstance(value, schedule) and not isinstance(value, crontab)


def next_run(value: Any, last_run: datetime | None, now: datetime | None = None, *,
             exact: bool = True) -> tuple[datetime | None, bool]:
    """When beat runs ``value`` next after ``last_run``; and whether that is overdue
    (beat runs a missed run at its next tick). Unknown (None) for an interval that
    has no last run; a calendar (crontab, solar) counts from now then.

    ``exact=False``: ``last_run`` may lag behind beat (django-celery-beat writes it
    every few minutes), so an overdue run is taken as made on time: the next one is
    the first occurrence after now.
    """
    now = now or utcnow()
    base = last_run
    if base is None:
        if _interval(value):
            return None, False
        base = now
    try:
        remaining = value.remaining_estimate(base)
    except Exception:  # a schedule class of the user's that cannot estimate
        return None, False
    if remaining.total_seconds() <= 0 and last_run is not None:
        if exact:
            return now, True
        if _interval(value) and value.run_every.total_seconds() > 0:
            step = value.run_every.total_seconds()
            return now + timedelta(seconds=remaining.total_seconds() % step), False
        return next_run(value, None, now)
    return now + remaining, False


def _last_jobs(jobs: Jobs, records: Mapping[str, RecurringRecord],
               names: list[str]) -> dict[str, JobRecord]:
    """The last run's job of each name: the stored ids in one query; a name with no
    stored run yet, its newest job with ``recurring=<name>`` (one query each)."""
    ids = {name: records[name].last_job for name in names
           if name in records and records[name].last_job}
    found = {job.id: job for job in jobs.search(Q(id__in=list(ids.values())),
                                                limit=len(ids))} if ids else {}
    out = {name: found[job_id] for name, job_id in ids.items() if job_id in found}
    for name in names:
        if name not in ids:
            newest = jobs.search(P("recurring") == name, order_by=("-created",), limit=1)
            if newest:
                out[name] = newest[0]
    return out


def _base(record: RecurringRecord | None, stored: datetime | None) -> datetime | None:
    """Beat's last run of a recurring job: its last send, or the resume if later."""
    candidates = [stored]
    if record is not None:
        candidates.append(record.last_beat)
        if not record.paused:
            candidates.append(record.paused_at)  # a resume restarts the count
    known = [c for c in candidates if c is not None]
    return max(known) if known else None


def overview(jobs: Jobs, stored_last_runs: Mapping[str, datetime | None] | None = None,
             now: datetime | None = None) -> list[ScheduleRow]:
    """The recurring jobs of ``jobs`` (by name), then the app's other beat entries.

    ``stored_last_runs`` (entry name -> time) is beat's own record where one can be
    read (django-celery-beat's ``last_run_at``); it is also the only last run known of
    entries that are not recurring jobs.
    """
    now = now or utcnow()
    stored_last_runs = stored_last_runs or {}
    app = jobs.bgp.app
    entries = dict(app.conf.beat_schedule or {})
    names = sorted(jobs.recurring_jobs)
    records = jobs.recurring_records()
    last_jobs = _last_jobs(jobs, records, names)
    rows = []
    for name in names:
        entry = jobs.entry_name(name)
        spec = entries.pop(entry, {})
        value = maybe_schedule(spec.get("schedule", jobs.recurring_jobs[name].get("schedule")),
                               app=app)
        record = records.get(name)
        job = last_jobs.get(name)
        exact = record is not None and record.last_beat is not None
        when, due = next_run(value, _base(record, stored_last_runs.get(entry)), now,
                             exact=exact)
        last = record.last_run if record and record.last_run else (job.created if job else None)
        rows.append(ScheduleRow(entry, spec.get("task", f"{jobs.bgp.task_prefix}.jobs.recurring"),
                                describe(value), name, value, when, due, last, job, record))
    for entry, spec in sorted(entries.items()):
        value = maybe_schedule(spec.get("schedule"), app=app)
        last = stored_last_runs.get(entry)
        when, due = next_run(value, last, now, exact=False)
        rows.append(ScheduleRow(entry, str(spec.get("task", "")), describe(value),
                                schedule=value, next_run=when, due=due, last_run=last))
    return rows
