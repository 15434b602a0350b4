"""Console page: workers. Who runs what now (Celery's broadcast), who died (the job store).

Live workers come from one short control/inspect round (:mod:`.inspection`): host,
pid, pool and concurrency, uptime, the queues they consume, the tasks they run now
(linked to their job pages: a job's task id is its id) and the age of the newest
heartbeat of the job locks they hold. Workers that are gone come from
:mod:`.lost` (recovery's record, last day) and from the workers this console saw
answer before. Shut down, add or cancel a queue consumer are Celery's own control
commands, sent to one worker (``destination``) with ``reply=True``; they need
``celery_bgp.control_worker`` and are logged in the admin History.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from django.contrib import messages
from django.contrib.admin.utils import quote
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from ..admin_support import find_bgp
from .audit import log_console_action
from .base import check_perm, render
from .inspection import CONNECT_TIMEOUT, WorkerInfo, seen_workers, snapshot
from .lost import WINDOW, LostWorker, lost_workers, running_jobs

__all__ = ["urls", "workers_context"]

PERM = "control_worker"
#: Seconds the store's record of lost workers is reused (live refreshes read it once a minute).
LOST_TTL = 60
#: Seconds a worker has to answer a control command.
CONTROL_TIMEOUT = 2.0
ACTIONS = {"shutdown": "shut down", "add_consumer": "start consuming from",
           "cancel_consumer": "stop consuming from"}
QUEUE_NAME = re.compile(r"^[^\s]{1,255}$")


@dataclasses.dataclass
class WorkerRow:
    info: WorkerInfo
    tasks: list[dict[str, Any]]
    heartbeat: datetime | None
    heartbeat_age: float | None


@dataclasses.dataclass
class GoneRow:
    hostname: str
    last_seen: datetime | None
    last_heartbeat: datetime | None
    lost: LostWorker | None
    answers_again: bool = False


def workers_context(job_url: Callable[[str], str], *, fresh: bool = False) -> dict[str, Any]:
    """Template context of the page (and of its live fragment); ``job_url(id)`` links a job."""
    now = datetime.now(timezone.utc)
    bgp = find_bgp()
    if bgp is None:
        return {"now": now, "problem": "No celery-bgp instance is configured "
                                       "(CELERY_BGP_INSTANCE), so there is no broker to ask."}
    app = bgp.app
    snap = snapshot(app, fresh=fresh)
    jobs = running_jobs(t.id for w in snap.workers.values() for t in w.active or ())
    rows = []
    for worker in snap.workers.values():
        tasks, beats = [], []
        for task in worker.active or ():
            job = jobs.get(task.id)
            tasks.append({"task": task, "job": job, "url": job_url(job.pk) if job else None,
                          "running_for": (now - task.started).total_seconds()
                          if task.started else None})
            if job is not None and job.lock_heartbeat is not None:
                beats.append(job.lock_heartbeat)
        beat = max(beats) if beats else None
        rows.append(WorkerRow(worker, tasks, beat,
                              (now - beat).total_seconds() if beat else None))
    alive = snap.hostnames
    lost = _lost(app, bgp, now)
    # Without an answer from the broker nobody is known to be gone: only the store speaks.
    seen = {} if snap.error else seen_workers(app)
    gone = []
    for host in sorted(set(lost) | (set(seen) - alive)):
        record = lost.get(host)
        for moved in (record.moved + record.pending) if record else ():
            moved.url = job_url(moved.job_id)
        # A host that answers again (restarted under the same name) keeps its row: one of
        # its processes died, and recovery moved that process's jobs.
        last_seen = None if host in alive else seen.get(host, {}).get("last_seen")
        gone.append(GoneRow(host, last_seen, record.last_heartbeat if record else None,
                            record, host in alive))
    gone.sort(key=lambda g: g.last_seen or g.last_heartbeat or now, reverse=True)
    return {"now": now, "snapshot": snap, "workers": rows, "gone": gone,
            "transport": bgp.transport, "lost_window_hours": WINDOW // timedelta(hours=1)}


def _lost(app: Any, bgp: Any, now: datetime) -> dict[str, LostWorker]:
    """:func:`.lost.lost_workers`, computed at most once a minute per app."""
    key = f"celery_bgp:console:lost:{app.main or 'celery'}"
    found = cache.get(key)
    if found is None:
        timeout = float(getattr(bgp.settings, "job_lock_timeout", 0) or 0) \
            if bgp.has_jobs else 0.0
        found = lost_workers(now, timeout)
        cache.set(key, found, LOST_TTL)
    return found


def control(app: Any, action: str, hostname: str, queue: str | None) -> list[dict[str, Any]]:
    """Send one control command to one worker; its replies (``[{host: answer}]``)."""
    with app.connection_for_write(connect_timeout=CONNECT_TIMEOUT) as connection:
        connection.ensure_connection(max_retries=0, timeout=CONNECT_TIMEOUT)
        options = {"destination": [hostname], "reply": True, "timeout": CONTROL_TIMEOUT,
                   "connection": connection}
        if action == "shutdown":
            return app.control.shutdown(**options) or []
        command = getattr(app.control, action)
        return command(queue, **options) or []


def _answer(replies: list[dict[str, Any]], hostname: str) -> str:
    for reply in replies:
        if isinstance(reply, dict) and hostname in reply:
            answer = reply[hostname]
            if isinstance(answer, dict):
                return str(answer.get("ok") or answer.get("error") or answer)
            return str(answer)
    return ""


def _control_view(model_admin: Any, request: HttpRequest) -> HttpResponse:
    check_perm(model_admin, request, PERM)
    page = reverse(f"{model_admin.admin_site.name}:celery_bgp_console_workers")
    action = request.POST.get("action", "")
    hostname = request.POST.get("worker", "").strip()
    queue = request.POST.get("queue", "").strip() or None
    if action not in ACTIONS or not hostname:
        messages.error(request, "Unknown worker action.")
        return HttpResponseRedirect(page)
    if action != "shutdown" and (queue is None or not QUEUE_NAME.match(queue)):
        messages.error(request, "Name the queue (no spaces).")
        return HttpResponseRedirect(page)
    bgp = find_bgp()
    if bgp is None:
        raise PermissionDenied("no celery-bgp instance is configured")
    if action == "shutdown" and request.POST.get("confirm") != "yes":
        return render(model_admin, request, "admin/celery_bgp/console/workers_confirm.html",
                      {"worker": hostname, "action": action, "back_url": page},
                      title="Shut down a worker?",
                      current="celery_bgp_console_workers")
    what = f"{ACTIONS[action]} {queue}" if queue else ACTIONS[action]
    try:
        replies = control(bgp.app, action, hostname, queue)
    except Exception as exc:  # broker down: say so, log nothing (nothing was sent)
        messages.error(request, f"Could not send “{what}” to {hostname}: "
                                f"{type(exc).__name__}: {exc}")
        return HttpResponseRedirect(page)
    answer = _answer(replies, hostname)
    if answer:
        messages.success(request, f"{hostname} answered: {answer}")
    elif action == "shutdown":
        messages.success(request, f"Shutdown sent to {hostname}. A worker that shuts down "
                                  "does not answer: it finishes the tasks it runs, then "
                                  "leaves this list.")
    else:
        messages.warning(request, f"{hostname} did not answer within {CONTROL_TIMEOUT:g} s "
                                  f"(“{what}” was sent).")
    log_console_action(model_admin, request, f"worker {hostname}",
                       f"Console: {what} (worker {hostname}); "
                       f"reply: {answer or 'none'}.")
    cache.delete(f"celery_bgp:console:workers:{bgp.app.main or 'celery'}")
    return HttpResponseRedirect(page)


def urls(model_admin: Any) -> list[Any]:
    def view(request: HttpRequest) -> HttpResponse:
        check_perm(model_admin, request)
        site = model_admin.admin_site.name
        context = workers_context(
            lambda pk: reverse(f"{site}:celery_bgp_job_change", args=[quote(pk)]))
        context.update({
            "fragment": "admin/celery_bgp/console/workers_live.html",
            "live_url": reverse(f"{site}:celery_bgp_console_workers"),
            "control_url": reverse(f"{site}:celery_bgp_console_workers_control"),
            "may_control": request.user.has_perm(f"{model_admin.opts.app_label}.{PERM}"),
        })
        return render(model_admin, request, "admin/celery_bgp/console/workers.html", context,
                      title="Workers", current="celery_bgp_console_workers")

    def control_view(request: HttpRequest) -> HttpResponse:
        return _control_view(model_admin, request)

    site = model_admin.admin_site
    return [
        path("workers/", site.admin_view(view), name="celery_bgp_console_workers"),
        path("workers/control/", site.admin_view(require_POST(control_view)),
             name="celery_bgp_console_workers_control"),
    ]

