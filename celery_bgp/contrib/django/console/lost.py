"""What the job store knows about workers: the jobs they run, and the ones that died.

A running job's lock names its holder ``<worker hostname>/<pid>/<execution id>``
(:mod:`celery_bgp.jobs.runner`) and its heartbeat (``lock_heartbeat``). When a worker
dies, its locks expire and recovery (:mod:`celery_bgp.jobs.monitor`) moves each job
with the reason ``worker lost: <holder> stopped heartbeating`` (Enqueued again,
Failed with ``celery_bgp.WorkerLost``, or Cancelled). So the store answers, without a
registry of workers: which jobs a dead worker held (expired locks, recovery pending)
and which ones recovery moved from it (state rows of the last day), and, from
those, roughly when it was last alive.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db.models import Q

from ..models import Job, JobState

__all__ = ["LostWorker", "Moved", "lost_workers", "running_jobs"]

#: How far back recovery's moves are shown.
WINDOW = timedelta(hours=24)
#: At most this many moved jobs / expired locks are read.
LIMIT = 200
MARK = "worker lost: "


@dataclasses.dataclass
class Moved:
    """A job recovery took from a worker (or, ``state=None``, one it is about to)."""

    job_id: str
    job_name: str
    state: str | None
    when: datetime | None
    pid: str | None
    url: str | None = None  # the job's admin page (set by the page)


@dataclasses.dataclass
class LostWorker:
    """A worker that stopped heartbeating, as the job store saw it."""

    hostname: str
    #: Newest heartbeat known (expired locks), or the latest time it can have been
    #: alive (a recovered lock expired ``lock timeout`` after its last heartbeat).
    last_heartbeat: datetime | None = None
    moved: list[Moved] = dataclasses.field(default_factory=list)
    pending: list[Moved] = dataclasses.field(default_factory=list)


def running_jobs(ids: Iterable[str]) -> dict[str, Job]:
    """Job rows of these task ids (one primary-key lookup); tasks that are no job are absent."""
    wanted = [i for i in set(ids) if i][:500]
    if not wanted:
        return {}
    rows = Job.objects.filter(pk__in=wanted).only(
        "id", "name", "state", "queue", "lock_holder", "lock_heartbeat", "lock_expires")
    return {row.pk: row for row in rows}


def split_holder(holder: str | None) -> tuple[str | None, str | None]:
    """``host/pid/execution`` -> (host, pid); other holders (monitor, hand) -> (None, None)."""
    if not holder or "/" not in holder:
        return None, None
    parts = holder.split("/")
    return parts[0], parts[1] if len(parts) > 2 else None


def lost_workers(now: datetime, lock_timeout: float) -> dict[str, LostWorker]:
    """Workers whose jobs recovery moved in the last :data:`WINDOW`, or whose locks expired.

    Two bounded queries: Executing jobs with an expired lock (the monitor's own query,
    through ``(state, created)``), and the recovery state rows elected since ``now -
    WINDOW`` of the jobs modified since then (at most :data:`LIMIT`, newest first; the
    planner may go through the ``modified`` index and the history's ``(job, sequence)``).
    The page reuses the answer for a minute.
    """
    found: dict[str, LostWorker] = {}
    expired = (Job.objects.filter(state="Executing", lock_expires__lt=now)
               .only("id", "name", "lock_holder", "lock_heartbeat").order_by("created")[:LIMIT])
    for job in expired:
        host, pid = split_holder(job.lock_holder)
        if host is None:
            continue
        lost = found.setdefault(host, LostWorker(host))
        lost.pending.append(Moved(job.pk, job.name, None, job.lock_heartbeat, pid))
        if job.lock_heartbeat and (lost.last_heartbeat is None
                                   or job.lock_heartbeat > lost.last_heartbeat):
            lost.last_heartbeat = job.lock_heartbeat
    since = now - WINDOW
    rows = (JobState.objects
            .filter(job__modified__gte=since, elected__gte=since,
                    name__in=["Enqueued", "Failed", "Cancelled"])
            .filter(Q(reason__contains=MARK)
                    | Q(name="Failed", data__exception_type="celery_bgp.WorkerLost"))
            .order_by("-elected").values_list("job_id", "job__name", "name", "elected",
                                              "reason", "data")[:LIMIT])
    for job_id, name, state, elected, reason, data in rows:
        text = reason if reason and MARK in reason else str((data or {}).get("message") or "")
        holder = text.split(MARK, 1)[1].split(" ", 1)[0] if MARK in text else None
        host, pid = split_holder(holder)
        if host is None:
            continue
        lost = found.setdefault(host, LostWorker(host))
        lost.moved.append(Moved(job_id, name, state, elected, pid))
        alive_until = elected - timedelta(seconds=lock_timeout)
        if lost.last_heartbeat is None or alive_until > lost.last_heartbeat:
            lost.last_heartbeat = alive_until
    return found
