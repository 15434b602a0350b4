"""Console page: queues. Depth per queue and priority from the broker, next to the store's
oldest waiting job, throughput and failure rate; the Azure poison queues' requeue/purge.

Which queues: the app's ``task_queues`` and ``task_default_queue``, the queues jobs use
(:func:`.queue_stats.store_queues`, bounded) and those the live workers consume (the
console's last broadcast round, :mod:`.inspection`). Depths come from
:mod:`.brokers`; the poison actions use :class:`celery_bgp.transport.poison.PoisonQueues`
(as ``celery bgp poison`` does), need ``celery_bgp.manage_queue``, ask for
confirmation and are logged in the admin History.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from django.contrib import messages
from django.contrib.admin.utils import quote
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from ..admin_support import find_bgp
from .audit import log_console_action
from .base import check_perm, render
from .brokers import BrokerReport, queue_depths
from .inspection import snapshot
from .queue_stats import MAX_QUEUES, queue_stats, store_queues

__all__ = ["poison_listing", "queues_context", "urls"]

PERM = "manage_queue"
#: Seconds one reading of the broker's depths is shown to every viewer.
DEPTHS_TTL = 3
#: Poison messages listed under a queue (Azure peeks at most 32).
POISON_SHOWN = 10
OPERATIONS = {"requeue": ("requeue", "requeued", "Send them back to {queue}: workers take "
                                                 "them again (and may fail on them again)."),
              "purge": ("delete", "deleted", "They are deleted for good: there is no undo.")}


def app_queues(app: Any) -> list[str]:
    """The queues the app declares: ``task_queues`` and ``task_default_queue``."""
    conf = app.conf
    names = [getattr(q, "name", None) or str(q) for q in (conf.task_queues or ())]
    return [conf.task_default_queue or "celery", *names]


def queues_context(job_url: Any) -> dict[str, Any]:
    """Template context of the page (and its live fragment)."""
    now = datetime.now(timezone.utc)
    bgp = find_bgp()
    from_store = store_queues()
    names: list[str] = list(from_store)
    workers_error = None
    report: BrokerReport | None = None
    consumed: dict[str, list[str]] = {}
    if bgp is not None:
        names = app_queues(bgp.app) + names
        snap = snapshot(bgp.app, max_age=30)
        workers_error = snap.error
        for worker in snap.workers.values():
            for queue in worker.queues or ():
                consumed.setdefault(queue, []).append(worker.hostname)
        names += sorted(consumed)
    names = list(dict.fromkeys(n for n in names if n))[:MAX_QUEUES * 2]
    if bgp is not None:
        report = _depths(bgp.app, names)
    stats = queue_stats(names, now)
    rows = []
    for name in names:
        row = stats[name]
        depth = report.depths.get(name) if report else None
        rows.append({
            "queue": name, "depth": depth, "stats": row, "consumers": consumed.get(name, []),
            "oldest_url": job_url(row.oldest_id) if row.oldest_id else None,
            "waiting_seconds": (now - row.oldest_created).total_seconds()
            if row.oldest_created else None,
        })
    return {"now": now, "rows": rows, "report": report, "workers_error": workers_error,
            "no_bgp": bgp is None, "store_capped": len(from_store) >= MAX_QUEUES}


def _depths(app: Any, names: list[str]) -> BrokerReport:
    """:func:`.brokers.queue_depths`, shared for :data:`DEPTHS_TTL` seconds by every
    viewer (one broker round trip per refresh, however many admins watch)."""
    key = f"celery_bgp:console:depths:{app.main or 'celery'}"
    cached = cache.get(key)
    if cached is not None and cached[0] == names:
        return cached[1]
    report = queue_depths(app, names)
    cache.set(key, (names, report), DEPTHS_TTL)
    return report


def _poison(bgp: Any) -> Any:
    from celery_bgp.transport.poison import PoisonQueues

    return PoisonQueues(bgp.app.connection_for_write())


def poison_listing(bgp: Any, queue: str) -> dict[str, Any]:
    """A few poison messages of ``queue`` and the total, or the error."""
    try:
        queues = _poison(bgp)
        return {"queue": queue, "name": queues.name(queue), "count": queues.count(queue),
                "messages": queues.list(queue, POISON_SHOWN)}
    except Exception as exc:
        return {"queue": queue, "error": f"{type(exc).__name__}: {exc}"}


def _poison_view(model_admin: Any, request: HttpRequest) -> HttpResponse:
    check_perm(model_admin, request, PERM)
    queue = request.POST.get("queue", "").strip()
    operation = request.POST.get("operation", "")
    ids = [i for i in request.POST.getlist("ids") if i][:32] or None
    page = reverse(f"{model_admin.admin_site.name}:celery_bgp_console_queues")
    back = f"{page}?{urlencode({'poison': queue})}"
    bgp = find_bgp()
    if bgp is None or bgp.transport != "azurequeue":
        raise PermissionDenied("poison queues exist on the azurequeue:// broker only")
    if operation not in OPERATIONS or not queue:
        messages.error(request, "Unknown poison queue operation.")
        return HttpResponseRedirect(page)
    verb, past, explanation = OPERATIONS[operation]
    if request.POST.get("confirm") != "yes":
        return render(model_admin, request, "admin/celery_bgp/console/queues_confirm.html",
                      {"queue": queue, "operation": operation, "verb": verb, "ids": ids or [],
                       "explanation": explanation.format(queue=queue), "back_url": back,
                       "listing": poison_listing(bgp, queue)},
                      title=f"{verb.capitalize()} poison messages?",
                      current="celery_bgp_console_queues")
    try:
        queues = _poison(bgp)
        done = queues.requeue(queue, ids) if operation == "requeue" else \
            queues.purge(queue, ids)
    except Exception as exc:
        messages.error(request, f"Could not {verb} the poison messages of {queue}: "
                                f"{type(exc).__name__}: {exc}")
        return HttpResponseRedirect(back)
    which = f"message ids {', '.join(ids)}" if ids else "every message"
    text = f"{past.capitalize()} {done} poison message{'s' if done != 1 else ''} of {queue}."
    messages.success(request, text)
    cache.delete(f"celery_bgp:console:depths:{bgp.app.main or 'celery'}")
    log_console_action(model_admin, request, f"queue {queue}",
                       f"Console: {text} (asked for: {which})")
    return HttpResponseRedirect(back)


def urls(model_admin: Any) -> list[Any]:
    site = model_admin.admin_site

    def view(request: HttpRequest) -> HttpResponse:
        check_perm(model_admin, request)
        context = queues_context(
            lambda pk: reverse(f"{site.name}:celery_bgp_job_change", args=[quote(pk)]))
        shown = request.GET.get("poison")
        bgp = find_bgp()
        context.update({
            "fragment": "admin/celery_bgp/console/queues_live.html",
            "live_url": reverse(f"{site.name}:celery_bgp_console_queues"),
            "changelist_url": reverse(f"{site.name}:celery_bgp_job_changelist"),
            "poison_url": reverse(f"{site.name}:celery_bgp_console_queues_poison"),
            "may_manage": request.user.has_perm(f"{model_admin.opts.app_label}.{PERM}"),
        })
        if shown and bgp is not None and bgp.transport == "azurequeue" \
                and not request.headers.get("X-BGP-Live"):
            context["poison"] = poison_listing(bgp, shown)
        return render(model_admin, request, "admin/celery_bgp/console/queues.html", context,
                      title="Queues", current="celery_bgp_console_queues")

    def poison_view(request: HttpRequest) -> HttpResponse:
        return _poison_view(model_admin, request)

    return [
        path("queues/", site.admin_view(view), name="celery_bgp_console_queues"),
        path("queues/poison/", site.admin_view(require_POST(poison_view)),
             name="celery_bgp_console_queues_poison"),
    ]
