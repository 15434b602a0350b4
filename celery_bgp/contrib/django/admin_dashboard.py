"""The jobs dashboard: what an operator checks first, from aggregate queries only.

Counts per state and per queue and the oldest waiting job per queue come from the
store's :meth:`~celery_bgp.jobs.store.JobStore.summary` (GROUP BY queries on the
job table's indexes); throughput is one more GROUP BY over the last hour's
finished jobs, by minute, folded into 5-minute buckets here (at most 120 rows).
Poison queue sizes are asked of the broker when it is ``azurequeue://``.
"""
from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count
from django.db.models.functions import Trunc

from celery_bgp.commands import utcnow

from .admin_support import find_bgp
from .models import Job
from .store import DjangoJobStore

__all__ = ["Bucket", "QueueRow", "dashboard_context", "poison_counts", "throughput"]

logger = logging.getLogger("celery_bgp.admin")

BUCKET = timedelta(minutes=5)
WINDOW = timedelta(hours=1)
#: The per-queue columns, in this order (other states are in the total).
QUEUE_STATES = ("Enqueued", "Executing", "Retrying", "Awaiting", "Failed", "Succeeded")
STATE_ORDER = ("Enqueued", "Executing", "Retrying", "Awaiting", "Created", "Idle",
               "Failed", "Succeeded", "Cancelled", "Deleted")


@dataclasses.dataclass
class Bucket:
    """Jobs that finished in one 5-minute slot."""

    start: datetime
    succeeded: int = 0
    failed: int = 0


@dataclasses.dataclass
class QueueRow:
    queue: str
    total: int
    counts: list[int]
    oldest_waiting: datetime | None
    waiting_seconds: float | None
    poison: int | None


def throughput(now: datetime, using: str = "default") -> list[Bucket]:
    """Succeeded and failed jobs of the last hour per 5-minute bucket, oldest first."""
    first = now - WINDOW
    first = first.replace(minute=first.minute - first.minute % 5, second=0, microsecond=0)
    buckets = [Bucket(first + BUCKET * i) for i in range(int((now - first) / BUCKET) + 1)]
    rows = (Job.objects.using(using)
            .filter(state__in=["Succeeded", "Failed"], modified__gte=first)
            .annotate(minute=Trunc("modified", "minute")).order_by()
            .values_list("minute", "state").annotate(n=Count("pk")))
    for minute, state, n in rows:
        index = int((minute - first) / BUCKET)
        if 0 <= index < len(buckets):
            bucket = buckets[index]
            if state == "Succeeded":
                bucket.succeeded += n
            else:
                bucket.failed += n
    return buckets


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


def dashboard_context(using: str = "default") -> dict[str, Any]:
    """Template context of the dashboard."""
    now = utcnow()
    bgp = find_bgp()
    store = bgp.jobs.store if bgp is not None and bgp.has_jobs else None
    if not isinstance(store, DjangoJobStore):
        store = DjangoJobStore(using)
    summary = store.summary(None, since=now - WINDOW)
    queues = sorted(summary.queues)
    poison = poison_counts(bgp, queues)
    rows = []
    for queue in queues:
        per_state = summary.queues[queue]
        oldest = summary.oldest_waiting.get(queue)
        rows.append(QueueRow(
            queue, sum(per_state.values()), [per_state.get(s, 0) for s in QUEUE_STATES],
            oldest, (now - oldest).total_seconds() if oldest else None,
            None if poison is None else poison.get(queue)))
    known = [s for s in STATE_ORDER if s in summary.states]
    states = [(s, summary.states[s]) for s in known + sorted(set(summary.states) - set(known))]
    buckets = throughput(now, store.using)
    peak = max([b.succeeded + b.failed for b in buckets] + [1])
    return {
        "now": now,
        "states": states,
        "total": sum(summary.states.values()),
        "queue_states": QUEUE_STATES,
        "queues": rows,
        "has_poison": poison is not None,
        "buckets": [{"bucket": b, "ok_pct": 100 * b.succeeded / peak,
                     "failed_pct": 100 * b.failed / peak} for b in buckets],
        "finished_since": summary.finished_since,
    }
