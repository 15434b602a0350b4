"""Recurring jobs on Celery beat (cron, intervals, solar), as part of ``bgp.jobs``."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..exceptions import ImproperlyConfigured

__all__ = ["RecurringJobs"]


class RecurringJobs:
    """Mixin of :class:`~celery_bgp.jobs.client.Jobs`: declare and run recurring jobs."""

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
                                     "kwargs": dict(kwargs or {}), "options": options}
        bgp = self.bgp  # type: ignore[attr-defined]
        signature = bgp.app.signature(f"{bgp.task_prefix}.jobs.recurring", args=(name,))
        bgp.app.add_periodic_task(schedule, signature, name=f"bgp:{bgp.name}:recurring:{name}")

    def run_recurring(self, name: str) -> str:
        """Enqueue one run of the recurring job ``name``; return the new job id."""
        try:
            spec = self.recurring_jobs[name]
        except KeyError:
            raise ImproperlyConfigured(
                f"recurring job {name!r} is not declared in this process"
            ) from None
        options = dict(spec["options"])
        properties = {**options.pop("properties", {}), "recurring": name}
        return self.submit(spec["fn"], args=spec["args"], kwargs=spec["kwargs"],  # type: ignore[attr-defined]
                           properties=properties, **options)
