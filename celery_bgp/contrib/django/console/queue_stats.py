"""What the job store says about each queue: which queues exist, the oldest waiting job,
jobs waiting, and the last hour's throughput and failure rate.

Each answer is a bounded, index-friendly query (the admin stays fast over millions of
jobs on PostgreSQL, SQLite and MariaDB):

- the queue names: a "loose index scan" on ``(queue, state, created)``, one probe per
  queue (``queue > previous ORDER BY queue LIMIT 1``), at most :data:`MAX_QUEUES`;
- the oldest waiting job: one probe per queue (``queue = q AND state = 'Enqueued'
  ORDER BY created LIMIT 1``), as the store's ``summary`` does;
- Enqueued jobs per queue: counted on the same index up to :data:`MAX_COUNT` (a
  backlog of a million is "1000+", not a million index entries read per refresh);
- throughput and failures: one GROUP BY (queue, state) over the jobs finished in the
  last hour, found through the ``modified`` index.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db.models import Count

from ..models import Job

__all__ = ["MAX_QUEUES", "QueueStats", "queue_stats", "store_queues"]

MAX_QUEUES = 50
MAX_COUNT = 1000
WINDOW = timedelta(hours=1)


@dataclasses.dataclass
class QueueStats:
    queue: str
    enqueued: int = 0
    enqueued_capped: bool = False
    oldest_id: str | None = None
    oldest_created: datetime | None = None
    succeeded: int = 0
    failed: int = 0

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed

    @property
    def failure_rate(self) -> float | None:
        """Failed share of the last hour's finished jobs, in percent."""
        return 100.0 * self.failed / self.finished if self.finished else None

    @property
    def per_minute(self) -> float:
        return self.finished / (WINDOW.total_seconds() / 60)


def store_queues(using: str = "default", limit: int = MAX_QUEUES) -> list[str]:
    """Distinct queue names of the job table, one index probe each (at most ``limit``)."""
    found: list[str] = []
    jobs = Job.objects.using(using).order_by("queue").values_list("queue", flat=True)
    last = jobs.first()
    while last is not None and len(found) < limit:
        found.append(last)
        last = jobs.filter(queue__gt=last).first()
    return found


def queue_stats(queues: Iterable[str], now: datetime,
                using: str = "default") -> dict[str, QueueStats]:
    """Per-queue figures from the store for ``queues``."""
    names = list(dict.fromkeys(queues))[:MAX_QUEUES * 2]
    stats = {queue: QueueStats(queue) for queue in names}
    jobs = Job.objects.using(using)
    for queue, row in stats.items():
        waiting = jobs.filter(queue=queue, state="Enqueued")
        oldest = waiting.order_by("created").values_list("pk", "created").first()
        if oldest:
            row.oldest_id, row.oldest_created = oldest
            row.enqueued = waiting.order_by()[:MAX_COUNT + 1].count()
            row.enqueued_capped = row.enqueued > MAX_COUNT
            row.enqueued = min(row.enqueued, MAX_COUNT)
    finished = (jobs.filter(state__in=["Succeeded", "Failed"], modified__gte=now - WINDOW)
                .order_by().values_list("queue", "state").annotate(n=Count("pk")))
    for queue, state, n in finished:
        row = stats.get(queue)
        if row is None:
            continue
        if state == "Succeeded":
            row.succeeded += n
        else:
            row.failed += n
    return stats
