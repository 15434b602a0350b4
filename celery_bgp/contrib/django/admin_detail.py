"""What a job's admin page shows besides its columns, read in a fixed number of queries.

Timeline, logs, properties, data and links are each one bounded query (the newest
rows when a job has very many), so a job that logged a million lines still opens.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from django.apps import apps
from django.contrib import admin
from django.urls import NoReverseMatch, reverse

from celery_bgp.jobs.progress import KEY as PROGRESS_KEY

from .models import Continuation, Job, JobData, JobLog, JobProperty, JobState

__all__ = ["MAX_ROWS", "Failure", "failure_of", "job_details", "job_timeline"]

#: At most this many states, log lines, properties, data items or links are shown.
MAX_ROWS = 500

LEVELS = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}


#: State data keys that are bookkeeping, not something to show (``order``: the life
#: order that command event states carried in their data before it had its column).
HIDDEN_DATA = frozenset({"traceback", "order"})


@dataclasses.dataclass(frozen=True)
class Failure:
    """The exception of the job's current Failed (or Retrying) state."""

    state: str
    exception_type: str
    message: str
    traceback: str | None


def _newest(rows: Any, order: str) -> tuple[list[Any], bool]:
    """The newest ``MAX_ROWS`` rows oldest first, and whether older ones were left out."""
    found = list(rows.order_by(f"-{order}")[:MAX_ROWS + 1])
    return list(reversed(found[:MAX_ROWS])), len(found) > MAX_ROWS


def failure_of(job: Job, states: list[JobState]) -> Failure | None:
    """The failure box: only while the job is Failed (or Retrying), with the exception
    of that state. An earlier attempt's failure (a job that succeeded once requeued)
    is in the timeline, not in a box above the job."""
    if job.state not in ("Failed", "Retrying"):
        return None
    for state in reversed(states):
        if state.name == job.state:
            data = state.data or {}
            if not data.get("exception_type"):
                return None
            return Failure(state.name, data["exception_type"], data.get("message", ""),
                           data.get("traceback"))
    return None


def task_result_url(job_id: str, site: admin.AdminSite) -> str | None:
    """The django-celery-results admin page of the task with the job's id, if any."""
    if not apps.is_installed("django_celery_results"):
        return None
    from django_celery_results.models import TaskResult

    if TaskResult not in site._registry:
        return None
    pk = TaskResult.objects.filter(task_id=job_id).values_list("pk", flat=True).first()
    if pk is None:
        return None
    try:
        return reverse(f"{site.name}:django_celery_results_taskresult_change", args=[pk])
    except NoReverseMatch:
        return None


def job_timeline(job: Job) -> tuple[list[dict[str, Any]], bool, Any, list[JobState]]:
    """The newest states with the time since the previous one, whether older ones were
    left out, and when the last run started (one query)."""
    states, states_cut = _newest(JobState.objects.filter(job=job), "sequence")
    started = next((s.elected for s in reversed(states) if s.name == "Executing"), None)
    timeline = []
    previous = None
    for state in states:
        # The history is in life order; a clock that disagrees between two processes
        # (a publisher and a worker) could still date a state before the previous one.
        since = max((state.elected - previous).total_seconds(), 0.0) if previous else None
        shown = {k: v for k, v in (state.data or {}).items() if k not in HIDDEN_DATA}
        timeline.append({"state": state, "after": since, "data": shown,
                         "traceback": (state.data or {}).get("traceback")})
        if previous is None or state.elected > previous:
            previous = state.elected
    return timeline, states_cut, started, states


def job_details(job: Job, site: admin.AdminSite) -> dict[str, Any]:
    """Template context of a job's page: timeline, logs, failure, progress, links."""
    from .console.live import job_live_url, job_progress_context, job_status, last_log_id

    timeline, states_cut, started, states = job_timeline(job)
    logs, logs_cut = _newest(JobLog.objects.filter(job=job), "id")
    parents = (Continuation.objects.filter(child=job).select_related("parent")
               .only("on", "parent__id", "parent__name", "parent__state").order_by("id"))
    children = (Continuation.objects.filter(parent=job).select_related("child")
                .only("on", "child__id", "child__name", "child__state").order_by("id"))
    data_items = list(JobData.objects.filter(job=job).order_by("key")[:MAX_ROWS])
    job.progress_value = next((item.value for item in data_items if item.key == PROGRESS_KEY),
                              None)
    lines = [{"row": row, "level": LEVELS.get(row.level, str(row.level))} for row in logs]
    return {
        "timeline": timeline,
        "timeline_cut": states_cut,
        "logs": lines,
        "logs_cut": logs_cut,
        "logs_keep": MAX_ROWS,  # the page keeps as many while new lines come (console.js)
        "properties": list(JobProperty.objects.filter(job=job).order_by("name")[:MAX_ROWS]),
        "data_items": data_items,
        "parents": list(parents[:MAX_ROWS]),
        "children": list(children[:MAX_ROWS]),
        "failure": failure_of(job, states),
        **job_progress_context(job, started),
        "task_result_url": task_result_url(job.id, site),
        "live_url": job_live_url(site, job, job_status(job), last_log_id(lines)),
    }

