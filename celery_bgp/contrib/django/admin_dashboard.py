"""The jobs dashboard: what an operator checks first, live, from bounded queries only.

The page has two live parts (``static/celery_bgp/console.js``): every 5 seconds the
counts per state and per queue, the oldest waiting job per queue and the last hour's
finished jobs by minute; every 5 minutes the last day by hour and the run time
percentiles per job name (most of the page's database time, and slow to change).
The numbers come from :mod:`.console.dashboard_stats`, the charts from
:mod:`.console.charts`.

A dashboard left open must not load the database more per minute than its first
render, so a refresh is answered ``304 Not Modified`` (the browser's ``If-None-Match``
against the ETag of what it shows) while that is younger than :data:`MIN_AGE`, or
while no job was written since (the newest ``modified``: one index probe) within the
same minute. Busy, the counts are recomputed at most every 10 seconds; idle, a refresh
is one probe. Poison queue sizes are asked of the broker when it is ``azurequeue://``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
from datetime import datetime, timedelta
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseNotModified
from django.urls import reverse
from django.utils.cache import add_never_cache_headers

from celery_bgp.commands import utcnow

from .admin_support import find_bgp
from .console.base import check_perm, is_live, render
from .console.charts import FAILED, OK, Series, percentile_chart, stacked_bars
from .console.dashboard_stats import (
    CELL_CAP,
    Count,
    Slot,
    change_marker,
    duration_percentiles,
    finished_series,
    job_counts,
)
from .store import DjangoJobStore

__all__ = ["QueueRow", "dashboard_context", "dashboard_view", "poison_counts"]

logger = logging.getLogger("celery_bgp.admin")

#: The per-queue columns, in this order (other states are in the total).
QUEUE_STATES = ("Enqueued", "Executing", "Retrying", "Awaiting", "Failed", "Succeeded")
STATE_ORDER = ("Enqueued", "Executing", "Retrying", "Awaiting", "Created", "Idle",
               "Failed", "Succeeded", "Cancelled", "Deleted")
TEMPLATE = "admin/celery_bgp/job/dashboard.html"
#: A live part younger than this many seconds is not recomputed (answered 304).
MIN_AGE = {"now": 10, "day": 240}
#: Live parts: ?part=<name> -> fragment template.
PARTS = {"now": "admin/celery_bgp/job/_dashboard_now.html",
         "day": "admin/celery_bgp/job/_dashboard_day.html"}


@dataclasses.dataclass
class QueueRow:
    queue: str
    total: Count
    cells: list[Count]
    oldest_waiting: datetime | None
    waiting_seconds: float | None
    poison: int | None

    @property
    def counts(self) -> list[int]:
        return [int(c) for c in self.cells]


def poison_counts(bgp: Any, queues: list[str]) -> dict[str, int] | None:
    """Poison messages per queue on an ``azurequeue://`` broker; None on other brokers."""
    if bgp is None or bgp.transport != "azurequeue":
        return None
    from celery_bgp.transport.poison import PoisonQueues

    try:
        with bgp.app.connection_for_write() as connection:
            poison = PoisonQueues(connection)
            return {queue: poison.count(queue) for queue in queues}
    except Exception:  # the page still shows the store's numbers
        logger.exception("celery-bgp admin: could not count poison messages")
        return {}


def _using() -> tuple[Any, str]:
    """The project's BackgroundProcessing and the database alias its job store uses."""
    bgp = find_bgp()
    store = bgp.jobs.store if bgp is not None and bgp.has_jobs else None
    return bgp, store.using if isinstance(store, DjangoJobStore) else "default"


def now_context(now: datetime, bgp: Any, using: str) -> dict[str, Any]:
    """The 5-second part: counts per state and queue, waiting, the last hour by minute."""
    counts = job_counts(using)
    queues = sorted(counts.queues)
    poison = poison_counts(bgp, queues)
    rows = []
    for queue in queues:
        per_state = counts.queues[queue]
        oldest = counts.oldest_waiting.get(queue)
        rows.append(QueueRow(
            queue, counts.queue_totals[queue], [per_state.get(s, Count(0)) for s in QUEUE_STATES],
            oldest, (now - oldest).total_seconds() if oldest else None,
            None if poison is None else poison.get(queue)))
    known = [s for s in STATE_ORDER if s in counts.states]
    states = [(s, counts.states[s]) for s in known + sorted(set(counts.states) - set(known))]
    minutes = finished_series(now, using, unit="minute", slots=60)
    return {
        "now": now,
        "states": states,
        "total": counts.total,
        "queue_states": QUEUE_STATES,
        "cell_cap": f"{CELL_CAP:,}",
        "queues": rows,
        "has_poison": poison is not None,
        "buckets": [{"bucket": slot} for slot in minutes],
        "finished_since": sum(s.succeeded + s.failed for s in minutes),
        "failed_since": sum(s.failed for s in minutes),
        "hour_chart": _finished_chart(minutes, "bgp-chart-hour", "H:i", label_every=10,
                                      y_title="jobs finished per minute"),
    }


def day_context(now: datetime, using: str) -> dict[str, Any]:
    """The 5-minute part: the last day by hour, run time percentiles per job name."""
    hours = finished_series(now, using, unit="hour", slots=24)
    durations = duration_percentiles(now, using)
    return {
        "day_chart": _finished_chart(hours, "bgp-chart-day", "H:00", label_every=3,
                                     y_title="jobs finished per hour"),
        "day_finished": sum(s.succeeded + s.failed for s in hours),
        "day_failed": sum(s.failed for s in hours),
        "durations": durations,
        "duration_chart": percentile_chart(durations, chart_id="bgp-chart-durations")
        if durations else None,
    }


def _finished_chart(slots: list[Slot], chart_id: str, fmt: str, *, label_every: int,
                    y_title: str) -> Any:
    from django.utils.dateformat import format as date_format

    bars = [Series(date_format(s.start, fmt),
                   f"{date_format(s.start, fmt)} UTC: {s.succeeded} succeeded, "
                   f"{s.failed} failed", (s.succeeded, s.failed)) for s in slots]
    return stacked_bars(bars, names=("succeeded", "failed"), colours=(OK, FAILED),
                        y_title=y_title, x_title="time (UTC)", label_every=label_every,
                        chart_id=chart_id)


def dashboard_context(using: str | None = None, bgp: Any = None) -> dict[str, Any]:
    """Template context of the whole dashboard."""
    found, default = _using()
    now = utcnow()
    using = using or default
    return {**now_context(now, bgp or found, using), **day_context(now, using)}


def dashboard_view(model_admin: Any, request: HttpRequest) -> HttpResponse:
    """The dashboard page, or one live part (``?part=now|day``) for the live script."""
    check_perm(model_admin, request)
    bgp, using = _using()
    now = utcnow()
    site = model_admin.admin_site.name
    if is_live(request):
        part = request.GET.get("part", "now")
        if part not in PARTS:
            part = "now"
        digest, fresh = _freshness(request.headers.get("If-None-Match", ""), part, now, using)
        if fresh:
            return HttpResponseNotModified()
        context = (now_context(now, bgp, using) if part == "now" else day_context(now, using))
        context["changelist_url"] = reverse(f"{site}:celery_bgp_job_changelist")
        response = render(model_admin, request, TEMPLATE, {**context, "fragment": PARTS[part]},
                          title="Jobs dashboard", current="celery_bgp_job_dashboard")
        # Kept by the browser but asked again each time: fetch() sends If-None-Match
        # and hands the script the kept copy on a 304 (which it then leaves alone).
        response["ETag"] = f'"{part}-{int(now.timestamp())}-{digest}"'
        response["Cache-Control"] = "private, no-cache"
        return response
    live_url = reverse(f"{site}:celery_bgp_job_dashboard")
    context = {**now_context(now, bgp, using), **day_context(now, using),
               "live_now_url": f"{live_url}?part=now", "live_day_url": f"{live_url}?part=day"}
    response = render(model_admin, request, TEMPLATE, context, title="Jobs dashboard",
                      current="celery_bgp_job_dashboard")
    add_never_cache_headers(response)  # what admin_view adds to every other admin page
    return response


def _freshness(tag: str, part: str, now: datetime, using: str) -> tuple[str, bool]:
    """The digest of what ``part`` would show now, and whether the browser's copy (its
    ETag ``"<part>-<computed at>-<digest>"``) may be kept."""
    tag = tag.strip()
    tag = tag[2:] if tag.startswith("W/") else tag  # a proxy may weaken it
    shown_part, _, rest = tag.strip('"').partition("-")
    computed, _, shown = rest.partition("-")
    if shown_part == part and computed.isdigit() and (
            now.timestamp() - int(computed) < MIN_AGE[part]):
        return shown, True  # too young to recompute: no query at all
    slot = now.replace(second=0, microsecond=0) if part == "now" else now.replace(
        minute=0, second=0, microsecond=0) + timedelta(minutes=now.minute // 10 * 10)
    key = f"{part}|{slot.isoformat()}|{change_marker(using)}"
    digest = hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:20]
    return digest, shown_part == part and shown == digest
