"""Recurring jobs on Celery beat (cron, intervals, solar), as part of ``bgp.jobs``.

Beat sends the ``<prefix>.jobs.recurring`` task on each entry's schedule; the task
enqueues one tracked job per run (property ``recurring=<name>``). A pause is a row in
the job store (:class:`RecurringRecord`, one per environment and name) that the task
reads before it enqueues, so every worker and beat see it at once, whatever beat's
scheduler, and it survives restarts; a stored django-celery-beat entry is disabled
too (:meth:`~celery_bgp.jobs.store.JobStore.set_beat_entry_enabled`), so beat does not
even send. The same row remembers the last run (its job) and beat's last send, which
the console and the CLI show without searching the jobs.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from ..commands import utcnow
from ..exceptions import ImproperlyConfigured

__all__ = ["RecurringJobs", "RecurringRecord", "RecurringUpserts", "entry_name"]

logger = logging.getLogger("celery_bgp.jobs.recurring")


@dataclasses.dataclass
class RecurringRecord:
    """What the job store keeps about one recurring job of one environment."""

    name: str
    environment: str = "default"
    paused: bool = False
    paused_by: str | None = None
    #: When it was paused (or resumed, once it was resumed).
    paused_at: datetime | None = None
    #: The newest run's job id (beat's or a "run now"), and when it was enqueued.
    last_job: str | None = None
    last_run: datetime | None = None
    #: When beat's last run reached a worker (a skipped one too): the base of the next run.
    last_beat: datetime | None = None


class RecurringUpserts:
    """The job store's recurring-job writes for stores that upsert one row per
    (environment, name): each write names only the fields it sets, so beat's runs on
    several workers and an operator's pause never read-modify-write the row. A store
    gives :meth:`_write_recurring` (one upsert) and ``recurring_records``."""

    def _write_recurring(self, environment: str, name: str, **fields: Any) -> None:
        raise NotImplementedError  # abstract: the store's one upsert

    def set_recurring_paused(self, environment: str, name: str, paused: bool, *,
                             by: str | None, at: datetime) -> RecurringRecord:
        self._write_recurring(environment, name, paused=paused, paused_by=by, paused_at=at)
        return self.recurring_records(environment, [name])[name]  # type: ignore[attr-defined]

    def record_recurring_run(self, environment: str, name: str, *, job_id: str | None = None,
                             at: datetime | None = None, beat: datetime | None = None) -> None:
        fields: dict[str, Any] = {}
        if job_id is not None:
            fields.update(last_job=job_id, last_run=at)
        if beat is not None:
            fields["last_beat"] = beat
        if fields:
            self._write_recurring(environment, name, **fields)


def entry_name(environment: str, name: str) -> str:
    """The beat entry (and django-celery-beat ``PeriodicTask``) name of a recurring job."""
    return f"bgp:{environment}:recurring:{name}"


class RecurringJobs:
    """Mixin of :class:`~celery_bgp.jobs.client.Jobs`: declare, run, pause recurring jobs."""

    recurring_jobs: dict[str, dict[str, Any]]

    def recurring(self, name: str, fn: Callable[..., Any] | str, schedule: Any,
                  args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None,
                  **options: Any) -> None:
        """Run ``fn`` on a beat ``schedule`` (seconds, timedelta, ``crontab``, ``solar``).

        Each run is a new tracked job with the property ``recurring=name``; ``options``
        are :meth:`submit` options (queue, priority, retry ...). Calendars such as
        "weekdays 9 to 5" are crontabs (``crontab(hour="9-17", day_of_week="mon-fri")``);
        a missed run is run once when beat comes back (Celery beat's policy). With
        django-celery-beat's DatabaseScheduler the entry is synced to its tables.
        Declare recurring jobs at import time, so beat and workers both know them.
        """
        from .invocation import callable_name, check_args, resolve

        fn_name = callable_name(fn)
        resolve(fn_name, self.settings.job_modules)  # type: ignore[attr-defined]
        check_args(list(args), dict(kwargs or {}))
        self.recurring_jobs[name] = {"fn": fn_name, "args": list(args),
                                     "kwargs": dict(kwargs or {}), "options": options,
                                     "schedule": schedule}
        bgp = self.bgp  # type: ignore[attr-defined]
        signature = bgp.app.signature(f"{bgp.task_prefix}.jobs.recurring", args=(name,))
        bgp.app.add_periodic_task(schedule, signature, name=self.entry_name(name))

    def entry_name(self, name: str) -> str:
        """Beat's name for the recurring job ``name`` of this environment."""
        return entry_name(self.environment, name)  # type: ignore[attr-defined]

    def _spec(self, name: str) -> dict[str, Any]:
        try:
            return self.recurring_jobs[name]
        except KeyError:
            raise ImproperlyConfigured(
                f"recurring job {name!r} is not declared in this process"
            ) from None

    def run_recurring(self, name: str) -> str:
        """Enqueue one run of the recurring job ``name`` now; return the new job id.

        Runs even while the job is paused (an operator's "run now"); beat's runs go
        through :meth:`run_scheduled`, which honours the pause.
        """
        spec = self._spec(name)
        options = dict(spec["options"])
        properties = {**options.pop("properties", {}), "recurring": name}
        job_id = self.submit(spec["fn"], args=spec["args"], kwargs=spec["kwargs"],  # type: ignore[attr-defined]
                             properties=properties, **options)
        try:  # the run is on its way: failing to note it must not fail it
            self.store.record_recurring_run(self.environment, name, job_id=job_id,  # type: ignore[attr-defined]
                                            at=utcnow())
        except Exception:
            logger.warning("could not record the run %s of recurring job %r", job_id, name,
                           exc_info=True)
        return job_id

    def run_scheduled(self, name: str) -> str | None:
        """Beat's run of ``name`` (the recurring task): skipped, with a log line, when
        paused; else :meth:`run_recurring`. Returns the new job id or None."""
        self._spec(name)
        store, environment = self.store, self.environment  # type: ignore[attr-defined]
        try:
            record = store.recurring_records(environment, [name]).get(name)
            store.record_recurring_run(environment, name, beat=utcnow())
        except Exception:  # e.g. the table is not migrated yet: run as before pauses existed
            logger.warning("could not read whether recurring job %r is paused (is the job "
                           "store migrated?): running it", name, exc_info=True)
            record = None
        if record is not None and record.paused:
            logger.info("recurring job %r is paused (by %s at %s): this run is skipped",
                        name, record.paused_by or "?",
                        record.paused_at.isoformat() if record.paused_at else "?")
            return None
        return self.run_recurring(name)

    def pause_recurring(self, name: str, by: str | None = None) -> RecurringRecord:
        """Pause ``name``: beat's runs are skipped until :meth:`resume_recurring`.

        Stored in the job store (every worker and beat see it, restarts keep it); a
        django-celery-beat entry of the same name is disabled as well.
        """
        return self._set_paused(name, True, by)

    def resume_recurring(self, name: str, by: str | None = None) -> RecurringRecord:
        """Undo :meth:`pause_recurring`: beat's next run goes ahead."""
        return self._set_paused(name, False, by)

    def _set_paused(self, name: str, paused: bool, by: str | None) -> RecurringRecord:
        self._spec(name)
        store = self.store  # type: ignore[attr-defined]
        record = store.set_recurring_paused(self.environment, name, paused,  # type: ignore[attr-defined]
                                            by=by, at=utcnow())
        try:
            store.set_beat_entry_enabled(self.entry_name(name), not paused)
        except Exception:  # the store's flag is what counts; beat's copy is a bonus
            logger.warning("could not %s beat's stored entry of %r",
                           "disable" if paused else "enable", name, exc_info=True)
        return record

    def recurring_records(self) -> dict[str, RecurringRecord]:
        """The stored pause and last-run record of each recurring job of this environment."""
        return self.store.recurring_records(self.environment)  # type: ignore[attr-defined]
