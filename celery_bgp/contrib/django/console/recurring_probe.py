"""The Recurring page's "changed since?" probe: one query instead of a render.

Everything the table shows that changes on its own is in the recurring rows (pause, last
run, beat's last run) and in the state of each last run's job, so one query over the
few rows of this environment, joined to their jobs' states, gives a version. A live ask
that carries the version the page shows (``?v=``) and finds it unchanged is answered 204
(the browser counts the next run down by itself). Only for the Django store, whose rows
the ORM reads; another store's page re-renders on each ask. With django-celery-beat, its
own change stamp (``PeriodicTasks``: an entry edited, enabled or disabled in its admin)
is a second, one-row query.
"""
from __future__ import annotations

import hashlib
from typing import Any

from django.db.models import OuterRef, Subquery

from .. import beat
from ..models import Job, RecurringJob

__all__ = ["version"]


def version(bgp: Any) -> str | None:
    """A short digest of the table's changing data, or None when it cannot be probed."""
    using = getattr(bgp.jobs.store, "using", None)
    if not isinstance(using, str):
        return None
    state = Job.objects.using(using).filter(pk=OuterRef("last_job")).values("state")[:1]
    rows = (RecurringJob.objects.using(using).filter(environment=bgp.name)
            .annotate(job_state=Subquery(state)).order_by("name")
            .values_list("name", "paused", "paused_by", "paused_at", "last_job", "last_run",
                          "last_beat", "job_state"))
    text = repr((sorted(bgp.jobs.recurring_jobs), list(rows), _beat_changed()))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _beat_changed() -> object:
    if not beat.installed():
        return None
    from django_celery_beat.models import PeriodicTasks

    return PeriodicTasks.last_change()
