"""Small pieces the job admin's pages share: the job engine, badges, labels, durations.

The admin steers jobs through the project's ``BackgroundProcessing`` (the same one
the REST views use: ``CELERY_BGP_INSTANCE`` or the current Celery app's), so
requeued jobs are sent by the project's own Celery app and broker.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from celery_bgp.jobs.progress import KEY as PROGRESS_KEY
from celery_bgp.jobs.progress import Progress, read_progress
from celery_bgp.priority import Priority

__all__ = [
    "STATE_COLOURS",
    "breakable_name",
    "find_bgp",
    "format_duration",
    "page_progress",
    "pretty_json",
    "priority_label",
    "progress_bar",
    "short_id",
    "short_time",
    "state_badge",
]

#: Characters of a job id the list shows (the full id is in its title).
SHORT_ID = 8

#: State -> badge colour (background); unknown states are grey.
STATE_COLOURS = {
    "Succeeded": "#2e7d32", "Failed": "#c62828", "Executing": "#0277bd",
    "Enqueued": "#1565c0", "Retrying": "#ef6c00", "Awaiting": "#6a1b9a",
    "Created": "#546e7a", "Idle": "#546e7a", "Cancelled": "#616161", "Deleted": "#9e9e9e",
}


def find_bgp() -> Any | None:
    """The project's BackgroundProcessing, or None when none is configured."""
    from .rest import get_bgp

    try:
        return get_bgp()
    except (LookupError, ImportError):
        return None


def state_badge(state: str) -> SafeString:
    """A coloured label for a state name (the ``bgp-state`` CSS class)."""
    colour = STATE_COLOURS.get(state, "#757575")
    return format_html('<span class="bgp-state" style="background:{}">{}</span>', colour, state)


def priority_label(value: int | None) -> str:
    """``0`` -> ``CRITICAL`` ... ``4`` -> ``NONE``; other numbers as they are."""
    try:
        return Priority(value).name
    except ValueError:
        return str(value)


def format_duration(seconds: float | None) -> str:
    """``0.42s``, ``12.3s``, ``4m 05s``, ``2h 03m``: short enough for a list column."""
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def run_seconds(started: datetime | None, ended: datetime | None) -> float | None:
    """Seconds from the last start to the end (or None when it never started)."""
    if started is None or ended is None or ended < started:
        return None
    return (ended - started) / timedelta(seconds=1)


def pretty_json(value: Any) -> SafeString:
    """JSON, indented, in a ``<pre>`` (escaped)."""
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str, sort_keys=True)
    return format_html('<pre class="bgp-json">{}</pre>', text)


def breakable_name(name: str) -> SafeString:
    """A job name that may wrap after its dots and colons (``shop.jobs:report``), never
    inside a word, so a long name takes lines rather than the other columns' room."""
    parts = re.split(r"(?<=[.:])", name)
    return format_html_join(mark_safe("<wbr>"), "{}", ((part,) for part in parts))


def short_time(moment: datetime, now: datetime) -> SafeString:
    """``21:48:11`` today, ``11-26 21:48`` this year, else the date (UTC); the full time
    in the title."""
    if moment.date() == now.date():
        shown = moment.strftime("%H:%M:%S")
    elif moment.year == now.year:
        shown = moment.strftime("%m-%d %H:%M")
    else:
        shown = moment.strftime("%Y-%m-%d")
    return format_html('<span title="{}">{}</span>', moment.strftime("%Y-%m-%d %H:%M:%S UTC"),
                       shown)


def short_id(job_id: str) -> SafeString:
    """The first :data:`SHORT_ID` characters, the full id in the title (hover, copy)."""
    return format_html('<span class="bgp-id" title="{}">{}</span>', job_id,
                       job_id[:SHORT_ID])


def page_progress(job_ids: list[str]) -> dict[str, Progress]:
    """Progress of these jobs (a page's running ones), one query on ``(job, key)``."""
    from .models import JobData

    if not job_ids:
        return {}
    rows = JobData.objects.filter(job_id__in=job_ids, key=PROGRESS_KEY).values_list(
        "job_id", "value")
    found = {job_id: read_progress(value) for job_id, value in rows}
    return {job_id: report for job_id, report in found.items() if report is not None}


def progress_bar(report: Progress | None, started: datetime | None, now: datetime,
                 detailed: bool = False) -> SafeString:
    """A ``<progress>`` bar with the percentage (and, ``detailed``, the message and the
    ETA); an unknown total shows the count done. Empty without a report of this run."""
    if report is None or not report.of_run(started):
        return mark_safe("")
    percent = report.percent
    left = report.remaining(started, now)
    eta = f"about {format_duration(left)} left" if left is not None else ""
    done = f"{report.done:g}" + (f" of {report.total:g}" if report.total else " done")
    title = " · ".join(x for x in (done, report.message or "", eta) if x)
    if percent is None:
        bar = format_html('<progress class="bgp-progress" title="{}"></progress> '
                          '<span class="bgp-progress-text">{}</span>', title, done)
    else:
        bar = format_html('<progress class="bgp-progress" max="100" value="{}" title="{}">'
                          '{}%</progress> <span class="bgp-progress-text">{}%</span>',
                          percent, title, percent, percent)
    if not detailed:
        return bar
    return format_html('<div class="bgp-progress-box">{} <span class="bgp-progress-done">{}'
                       '</span>{}{}</div>', bar, done,
                       format_html(' <span class="bgp-progress-eta">{}</span>', eta)
                       if eta else "",
                       format_html('<div class="bgp-progress-message">{}</div>',
                                   report.message) if report.message else "")
