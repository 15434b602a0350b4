"""Live refresh of the job list and a job's page: one cheap probe, 204 when nothing changed.

The URL a live part asks (``data-bgp-live``, see ``static/celery_bgp/console.js``)
says what the page shows, and every answer gives the next one (``X-BGP-Live-Url``):

- the list: its filters, search, ordering and page (the list's own query string), the
  time it was rendered, the page's job ids and its running ones. The probe is one
  query: "which jobs changed since then (the ``modified`` index), which running job of
  the page reported progress?"; when a change is new, a second asks whether it
  concerns the page (one of its jobs, or one matching its filters). Only then are the
  rows read again: the page query and the running jobs' progress, no count and no
  filter choices (the pagination and the sidebar stay as rendered). New progress
  alone sends only those bars, from what the probe read.
- a job's page: its state sequence, modification time, progress and last log line id.
  The probe is one query (the job row with its progress and newest log id as
  subqueries); a change re-renders the state, progress and timeline, and new log lines
  are sent alone and appended (``X-BGP-Live-Parts``).

A job a worker writes with a clock slightly behind ours, or commits late, must not be
missed: the probe looks :data:`SLACK` seconds further back than the last render.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any
from urllib.parse import urlencode

from django.contrib.admin.options import IncorrectLookupParameters
from django.db.models import OuterRef, QuerySet, Subquery, TextField, Value
from django.db.models.functions import Cast
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from celery_bgp.commands import utcnow
from celery_bgp.jobs.progress import KEY as PROGRESS_KEY
from celery_bgp.jobs.progress import read_progress, shown_progress

from ..admin_detail import LEVELS, MAX_ROWS
from ..models import Job, JobData, JobLog
from .base import check_perm, unchanged

__all__ = ["LIVE_PARAMS", "job_live_url", "list_live_url", "urls"]

#: Seconds the probe looks back beyond the last render (clock skew, late commits).
SLACK = 2.0
#: Query parameters of the live URLs (stripped before the list's own parameters are read).
LIVE_PARAMS = ("_t", "_ids", "_run", "_seen", "_s", "_log")
#: A page with more rows than this sends no ids: any change of a matching job refreshes it.
MAX_IDS = 100
#: A probe lists at most this many changes; more and the rows are rendered again.
MAX_SEEN = 50
#: How often the list and a job's page ask (milliseconds).
LIST_INTERVAL = 5000
JOB_INTERVAL = 3000


def urls(model_admin: Any) -> list[Any]:
    site = model_admin.admin_site
    return [
        path("live/list/", site.admin_view(partial(list_view, model_admin)),
             name="celery_bgp_console_live_list"),
        path("live/job/<path:object_id>/", site.admin_view(partial(job_view, model_admin)),
             name="celery_bgp_console_live_job"),
    ]


def _stamp(moment: datetime) -> str:
    return f"{moment.timestamp():.6f}"


def _moment(text: str | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(text), tz=timezone.utc) if text else None
    except (ValueError, OverflowError, OSError):
        return None


def _fingerprint(values: Any) -> str:
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


# -- the list ----------------------------------------------------------------------------


def list_live_url(model_admin: Any, request: HttpRequest, rows: list[Job]) -> str:
    """The live URL of a list page showing ``rows`` (what the probe compares against)."""
    params = [(key, value) for key, values in request.GET.lists() if key not in LIVE_PARAMS
              for value in values]
    running = [f"{row.pk}~{_stamp(row.started) if getattr(row, 'started', None) else ''}"
               for row in rows if row.state == "Executing"]
    params.append(("_t", _stamp(utcnow())))
    seen = getattr(request, "bgp_seen", None)
    if seen:
        params.append(("_seen", ",".join(sorted(seen))))
    if len(rows) <= MAX_IDS:
        params.append(("_ids", ",".join(row.pk for row in rows)))
    if running:
        params.append(("_run", ",".join(running)))
    url = reverse(f"{model_admin.admin_site.name}:celery_bgp_console_live_list")
    return f"{url}?{urlencode(params)}"


def _list_request(request: HttpRequest, **drop: bool) -> HttpRequest:
    """``request`` with only the list's own query parameters (and without ``drop``)."""
    query = request.GET.copy()
    for key in (*LIVE_PARAMS, *drop):
        query.pop(key, None)
    request.GET = query
    return request


def _token(job_id: str, version: Any) -> str:
    """A short name for one change of a job (its id and modification or report time)."""
    return hashlib.sha1(f"{job_id}@{version}".encode()).hexdigest()[:8]


def _versions(rows: QuerySet[Any]) -> QuerySet[Any]:
    """``(job id, "j", modification time as text)`` of job rows."""
    return rows.annotate(bgp_kind=Value("j"), bgp_version=Cast("modified", TextField())
                         ).values_list("pk", "bgp_kind", "bgp_version")


@dataclasses.dataclass
class ListChanges:
    """What the list's probe found: whether the rows must be rendered again, the new
    progress reports of its running jobs (job id -> stored value), and every change
    seen (tokens, the next probe's ``_seen``)."""

    rerender: bool
    progress: dict[str, Any]
    tokens: set[str]


def _running(request: HttpRequest) -> dict[str, datetime | None]:
    """The page's running jobs and when each run started (``_run=id~start,...``)."""
    found: dict[str, datetime | None] = {}
    for item in filter(None, request.GET.get("_run", "").split(",")):
        pk, _, stamp = item.rpartition("~")
        found[pk or stamp] = _moment(stamp) if pk else None
    return found


def _list_changes(model_admin: Any, request: HttpRequest, since: datetime,
                  seen: set[str]) -> ListChanges:
    """The probe (see the module's doc): the changes made since ``since`` (less
    :data:`SLACK`) that the page does not show yet.

    First one cheap query: the newest changes of any job (the ``modified`` index) and
    the progress reports of the page's running jobs. Nothing new: unchanged. New
    progress alone: only those bars are sent. Only a new change of some job makes a
    second query ask whether it is a job of the page or one matching its filters (a
    busy table, more than :data:`MAX_SEEN` changes: that question alone).
    """
    ids = [pk for pk in request.GET.get("_ids", "").split(",") if pk]
    has_ids = "_ids" in request.GET
    running = list(_running(request))
    after = since - timedelta(seconds=SLACK)
    recent = _versions(Job.objects.filter(modified__gt=after))
    if running:
        # Progress does not touch the job row: its report's time says when it changed.
        reported = (JobData.objects
                    .filter(job_id__in=running, key=PROGRESS_KEY,
                            value__at__gt=after.isoformat(timespec="microseconds"))
                    .annotate(bgp_kind=Value("p"), bgp_version=Cast("value", TextField()))
                    .values_list("job_id", "bgp_kind", "bgp_version"))
        recent = recent.union(reported, all=True)
    found = list(recent[:MAX_SEEN + 1])
    tokens = {_token(pk, kind + version): (pk, kind, version) for pk, kind, version in found}
    new = [row for token, row in tokens.items() if token not in seen]
    progress = {pk: json.loads(version) for pk, kind, version in new if kind == "p"}
    changed = {pk for pk, kind, _ in new if kind != "p"}
    if len(found) <= MAX_SEEN:
        if not changed:
            return ListChanges(False, progress, set(tokens))
        if changed & set(running) or changed & set(ids):
            return ListChanges(True, {}, set(tokens))
    # Do the new changes concern this list? The filters without the search (a search
    # may cost queries; a superset is fine), the page's rows (they may have left it).
    request.bgp_live = "probe"
    cl = model_admin.get_changelist_instance(_list_request(request, q=True))
    matching: QuerySet[Job] = cl.queryset.order_by()
    if has_ids:
        matching = matching | Job.objects.filter(pk__in=ids)
    if len(found) <= MAX_SEEN:
        concerned = matching.filter(pk__in=changed).exists()
        return ListChanges(concerned, {} if concerned else progress, set(tokens))
    relevant = list(_versions(matching.filter(modified__gt=after))[:MAX_SEEN + 1])
    mine = {_token(pk, kind + version) for pk, kind, version in relevant}
    return ListChanges(len(relevant) > MAX_SEEN or not mine <= seen, {}, mine)


def progress_part_id(job_id: str) -> str:
    """The element id of a running job's bar in the list (ids may hold any character)."""
    return "bgp-p-" + hashlib.sha1(job_id.encode()).hexdigest()[:10]


def _with_seen(request: HttpRequest, seen: set[str]) -> str:
    """The URL asked, with ``_seen`` replaced (what a 204 answer tells the next ask)."""
    query = request.GET.copy()
    query.pop("_seen", None)
    if seen:
        query["_seen"] = ",".join(sorted(seen))
    return f"{request.path}?{query.urlencode()}"


def _bars(request: HttpRequest, changes: ListChanges, seen: set[str]) -> HttpResponse:
    """No row to render again: 204, or only the running jobs' new progress bars."""
    from ..admin_support import progress_bar

    if not changes.progress:
        response = unchanged()
    else:
        started = _running(request)
        now = utcnow()
        parts = [format_html('<template data-bgp-part="{}">{}</template>',
                             progress_part_id(pk),
                             progress_bar(read_progress(value), started.get(pk), now))
                 for pk, value in changes.progress.items()]
        response = HttpResponse("".join(parts))
        response["X-BGP-Live-Parts"] = "1"
    if changes.tokens != seen:
        response["X-BGP-Live-Url"] = _with_seen(request, changes.tokens)
    return response


def list_view(model_admin: Any, request: HttpRequest) -> HttpResponse:
    """The list's result table (204 when the probe finds no change the page lacks).

    The probe looks back :data:`SLACK` seconds before the last render, so it finds
    again what that render showed: the changes found are in the URL (``_seen``), and
    only a change not among them, of a job of the page or matching its filters,
    re-renders the rows.
    """
    check_perm(model_admin, request)
    since = _moment(request.GET.get("_t"))
    seen = set(filter(None, request.GET.get("_seen", "").split(",")))
    original = request.GET
    try:
        if since is not None:
            changes = _list_changes(model_admin, request, since, seen)
            request.GET = original
            if not changes.rerender:
                return _bars(request, changes, seen)
            request.bgp_seen = changes.tokens
        request.GET = original
        request.bgp_live = "render"
        cl = model_admin.get_changelist_instance(_list_request(request))
    except IncorrectLookupParameters:
        return unchanged()
    cl.formset = None  # read-only rows (changelist_view sets it for the full page)
    request.current_app = model_admin.admin_site.name
    response = TemplateResponse(request, "admin/celery_bgp/job/_results.html", {
        "cl": cl, "opts": model_admin.opts})
    response["X-BGP-Live-Url"] = cl.bgp_live_url
    return response


# -- a job's page --------------------------------------------------------------------------


def _probe_job(object_id: str) -> Job | None:
    """The job with its progress value and newest log id: one query."""
    from ..admin import HEAVY

    progress = JobData.objects.filter(job=OuterRef("pk"), key=PROGRESS_KEY).values("value")
    last_log = JobLog.objects.filter(job=OuterRef("pk")).order_by("-id").values("id")
    return (Job.objects.defer(*HEAVY)
            .annotate(progress_value=Subquery(progress[:1]), last_log=Subquery(last_log[:1]))
            .filter(pk=object_id).first())


def job_status(job: Job) -> str:
    """What the status part depends on: state history length, modification, progress."""
    return _fingerprint([job.sequence, _stamp(job.modified), job.state,
                         job.cancel_requested is not None,
                         getattr(job, "progress_value", None)])


def job_live_url(site: Any, job: Job, status: str, last_log: int | None) -> str:
    """The live URL of a job's page showing ``status`` and logs up to ``last_log``."""
    url = reverse(f"{site.name}:celery_bgp_console_live_job",
                  args=[job.pk])
    return f"{url}?{urlencode({'_s': status, '_log': last_log or 0})}"


def job_view(model_admin: Any, request: HttpRequest, object_id: str) -> HttpResponse:
    """A job page's changed parts: state, progress and timeline; new log lines."""
    check_perm(model_admin, request)
    from django.contrib.admin.utils import unquote

    job = _probe_job(unquote(object_id))
    if job is None:
        raise Http404("no such job")
    status = job_status(job)
    try:
        shown_log = int(request.GET.get("_log", "0"))
    except ValueError:
        shown_log = 0
    status_changed = status != request.GET.get("_s")
    new_logs = job.last_log is not None and job.last_log > shown_log
    if not status_changed and not new_logs:
        return unchanged()
    context: dict[str, Any] = {"job": job, "opts": model_admin.opts,
                               "status_changed": status_changed}
    if status_changed:
        context.update(status_context(job))
    last_log = shown_log
    if new_logs:
        rows = list(JobLog.objects.filter(job=job, id__gt=shown_log).order_by("id")[:MAX_ROWS])
        context["logs"] = [{"row": row, "level": LEVELS.get(row.level, str(row.level))}
                           for row in rows]
        last_log = rows[-1].id if rows else shown_log
    request.current_app = model_admin.admin_site.name
    response = TemplateResponse(request, "admin/celery_bgp/job/_live_parts.html", context)
    response["X-BGP-Live-Parts"] = "1"
    response["X-BGP-Live-Url"] = job_live_url(model_admin.admin_site, job, status, last_log)
    return response


def status_context(job: Job) -> dict[str, Any]:
    """The status part's context (state, progress, ETA, run time) and the timeline."""
    from ..admin_detail import failure_of, job_timeline

    timeline, cut, started, states = job_timeline(job)
    return {"timeline": timeline, "timeline_cut": cut, "failure": failure_of(job, states),
            **job_progress_context(job, started)}


def job_progress_context(job: Job, started: datetime | None) -> dict[str, Any]:
    """Progress of a job page (from the probe's ``progress_value`` when it was read)."""
    from ..admin_support import progress_bar, run_seconds

    value = getattr(job, "progress_value", None)
    report = shown_progress(value, job.state, started)
    now = utcnow()
    ended = job.modified if job.state != "Executing" else now
    return {
        "progress": report,
        "progress_bar": progress_bar(report, started, now, detailed=True) if report else "",
        "run_seconds": run_seconds(started, ended),
        "running": job.state == "Executing",
    }


def last_log_id(logs: list[dict[str, Any]]) -> int | None:
    return logs[-1]["row"].id if logs else None


def needs_probe(request: HttpRequest) -> bool:
    """Whether the list is being probed (the ChangeList must not read its rows)."""
    return getattr(request, "bgp_live", None) == "probe"


__all__ += ["job_progress_context", "job_status", "last_log_id", "needs_probe",
            "status_context"]
