"""Console page: recurring jobs (every beat schedule, its next and last run) and their actions.

The rows are :func:`celery_bgp.jobs.beat.overview` (the recurring jobs declared in this
process, then the app's other beat entries, read-only) plus django-celery-beat's stored
entries when it is installed (their ``enabled`` flag and ``last_run_at``, and entries
made in its admin). Reads: one query for the recurring records, one for their last jobs,
one for django-celery-beat's rows, whatever the number of jobs.

Actions (``celery_bgp.manage_recurring``, POST with CSRF): run now (a new job at once,
even while paused), pause, resume (:meth:`~celery_bgp.jobs.recurring.RecurringJobs.pause_recurring`:
stored in the job store, where the ``jobs.recurring`` task looks before each run, and
django-celery-beat's entry disabled). Each is a message and an admin History entry on
the recurring job's row (:class:`~..models.RecurringJob`); a run now also on the new job.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib import messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.admin.utils import quote
from django.contrib.contenttypes.models import ContentType
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.views.decorators.csrf import csrf_protect

from celery_bgp.commands import utcnow
from celery_bgp.jobs.beat import ScheduleRow, describe, next_run, overview

from .. import beat
from ..admin_support import find_bgp, format_duration, state_badge
from ..models import Job, RecurringJob
from .base import check_perm, is_live, render, unchanged
from .recurring_probe import version

__all__ = ["urls"]

PERM = "manage_recurring"
CURRENT = "celery_bgp_console_recurring"
#: Seconds between live asks (each one query while nothing changed: recurring_probe).
REFRESH = 10


def urls(model_admin: Any) -> list[Any]:
    site = model_admin.admin_site

    def page(request: HttpRequest) -> HttpResponse:
        check_perm(model_admin, request)
        shown = _probe()
        if is_live(request) and shown is not None and request.GET.get("v") == shown:
            response = unchanged()
        else:
            response = render(model_admin, request, "admin/celery_bgp/console/recurring.html",
                              context(model_admin, request, shown), title="Recurring jobs",
                              current=CURRENT)
        if shown is not None:
            response["X-BGP-Live-Url"] = f"{reverse(f'{site.name}:{CURRENT}')}?v={shown}"
        return response

    @csrf_protect
    def act(request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        check_perm(model_admin, request, PERM)
        perform(model_admin, request, request.POST.get("action", ""),
                request.POST.get("name", ""))
        return HttpResponseRedirect(reverse(f"{site.name}:{CURRENT}"))

    return [path("recurring/", site.admin_view(page), name=CURRENT),
            path("recurring/action/", site.admin_view(act),
                 name="celery_bgp_console_recurring_action")]


def _ms(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def _ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return ""
    seconds = (now - moment).total_seconds()
    return f"in {format_duration(-seconds)}" if seconds < 0 else f"{format_duration(seconds)} ago"


def _stored_rows(stored: dict[str, Any], shown: set[str], now: datetime) -> list[ScheduleRow]:
    """django-celery-beat entries made in its own admin (not in the app's schedule)."""
    rows = []
    for name, task in stored.items():
        if name in shown:
            continue
        try:
            value = task.schedule
        except Exception:  # a row without a schedule: django-celery-beat disables it too
            value = None
        when, due = (next_run(value, task.last_run_at, now, exact=False) if value is not None
                     else (None, False))
        rows.append(ScheduleRow(name, task.task, describe(value) if value is not None else "—",
                                schedule=value, next_run=when, due=due,
                                last_run=task.last_run_at))
    return rows


def _view(row: ScheduleRow, stored: dict[str, Any], now: datetime, site: str
          ) -> dict[str, Any]:
    task = stored.get(row.entry)
    enabled = None if task is None else task.enabled
    job = row.last_job
    record = row.record
    return {
        "row": row,
        "label": row.name or row.entry,
        "recurring": row.name is not None,
        "paused": row.paused,
        "paused_by": record.paused_by if record else None,
        "paused_at": record.paused_at if record else None,
        "paused_ago": _ago(record.paused_at, now) if record else "",
        "stored": task is not None,
        "stored_enabled": enabled,
        "next_ago": "paused" if row.paused or enabled is False else (
            "due now" if row.due else _ago(row.next_run, now)),
        "last_ago": _ago(row.last_run, now),
        "next_ms": _ms(row.next_run) if not row.due else None,
        "last_ms": _ms(row.last_run),
        "paused_ms": _ms(record.paused_at) if record else None,
        "job": job,
        "job_url": reverse(f"{site}:celery_bgp_job_change", args=[quote(job.id)])
        if job else None,
        "job_state": state_badge(job.state) if job else None,
        "job_missing": bool(record and record.last_job and job is None),
    }


def rows(bgp: Any, now: datetime, site: str = "admin") -> list[dict[str, Any]]:
    """Every schedule as the table shows it."""
    stored = beat.periodic_tasks()
    found = overview(bgp.jobs, {name: task.last_run_at for name, task in stored.items()}, now)
    found += _stored_rows(stored, {row.entry for row in found}, now)
    return [_view(row, stored, now, site) for row in found]


def history(limit: int = 10) -> list[LogEntry]:
    """The latest admin actions on recurring jobs (the console's History of them)."""
    content_type = ContentType.objects.get_for_model(RecurringJob)
    return list(LogEntry.objects.filter(content_type=content_type)
                .select_related("user").order_by("-action_time")[:limit])


def _probe() -> str | None:
    """The version of what the table shows (:mod:`.recurring_probe`), or None."""
    bgp = find_bgp()
    if bgp is None or not bgp.has_jobs:
        return None
    try:
        return version(bgp)
    except (DatabaseError, *bgp.jobs.store.unavailable):
        return None  # the render that follows says what is wrong


def context(model_admin: Any, request: HttpRequest, shown: str | None = None
            ) -> dict[str, Any]:
    site = model_admin.admin_site.name
    live_url = reverse(f"{site}:{CURRENT}")
    out: dict[str, Any] = {
        "fragment": "admin/celery_bgp/console/recurring_table.html",
        "live_url": f"{live_url}?v={shown}" if shown else live_url,
        "refresh_ms": REFRESH * 1000,
        "action_url": reverse(f"{site}:celery_bgp_console_recurring_action"),
        "may_manage": request.user.has_perm(f"{model_admin.opts.app_label}.{PERM}"),
        "beat_installed": beat.installed(),
        "rows": [], "error": None,
    }
    bgp = find_bgp()
    if bgp is None or not bgp.has_jobs:
        out["error"] = ("No job engine: set CELERY_BGP_INSTANCE to the project's "
                        "BackgroundProcessing (with a job store).")
        return out
    out["now"] = now = utcnow()
    out["now_ms"] = _ms(now)
    try:
        out["rows"] = rows(bgp, now, site)
    except (DatabaseError, *bgp.jobs.store.unavailable) as exc:
        out["error"] = f"The job store did not answer: {type(exc).__name__}: {exc}"
    out["history"] = [] if out["error"] else history()
    return out


def _log(request: HttpRequest, bgp: Any, name: str, message: str) -> None:
    """A History entry on the recurring job's row (written by the action just before;
    none to point at when the job store is not this Django database)."""
    using = getattr(bgp.jobs.store, "using", "default")
    try:
        row = RecurringJob.objects.using(using).filter(environment=bgp.name, name=name).first()
    except DatabaseError:
        row = None
    LogEntry.objects.create(
        user_id=request.user.pk, content_type=ContentType.objects.get_for_model(RecurringJob),
        object_id=str(row.pk) if row else None, object_repr=f"recurring job {name}"[:200],
        action_flag=CHANGE, change_message=message)


def perform(model_admin: Any, request: HttpRequest, action: str, name: str) -> None:
    """Run one action; report it as a message (an error message when it could not)."""
    bgp = find_bgp()
    if bgp is None or not bgp.has_jobs:
        messages.error(request, "No job engine: nothing was done.")
        return
    if name not in bgp.jobs.recurring_jobs:
        messages.error(request, f"No recurring job {name!r} is declared in this process.")
        return
    who = request.user.get_username() or "an operator"
    try:
        if action == "trigger":
            job_id = bgp.jobs.run_recurring(name)
            _log(request, bgp, name, f"Ran now: job {job_id}")
            job = Job.objects.filter(pk=job_id).first()
            if job is not None:
                model_admin.log_change(request, job, f"Run now of recurring job {name!r}")
            url = reverse(f"{model_admin.admin_site.name}:celery_bgp_job_change",
                          args=[quote(job_id)])
            messages.success(request, _linked(f"Started a run of {name} now: job ", job_id, url))
        elif action in ("pause", "resume"):
            if action == "pause":
                bgp.jobs.pause_recurring(name, by=who)
                said = (f"Paused {name}: beat's runs are skipped until it is resumed "
                        "(a run now still runs).")
            else:
                bgp.jobs.resume_recurring(name, by=who)
                said = f"Resumed {name}: beat's next run goes ahead."
            _log(request, bgp, name, f"{action.capitalize()}d")
            messages.success(request, said)
        else:
            messages.error(request, f"Unknown action {action!r}: nothing was done.")
    except Exception as exc:  # the store or the broker is down: say so, never a 500
        messages.error(request, f"Could not {action} {name}: {type(exc).__name__}: {exc}")


def _linked(text: str, job_id: str, url: str) -> Any:
    from django.utils.html import format_html

    return format_html('{}<a href="{}">{}</a>.', text, url, job_id)
