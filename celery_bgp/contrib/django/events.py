"""The ``django-db://`` event repository: command events as jobs in the Django job store.

``event_repository="django-db://"`` (the ``default`` database) or
``"django-db://<alias>"``; ``?environment=<name>`` (or the ``environment`` option)
picks the jobs' environment. Commands then show up as jobs (kind ``command``) in
the job store, the admin and the query API, and their events are the job's states.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from celery_bgp.extras import require

require("django", "django", "The django-db:// event repository")

from django.db import DataError, IntegrityError, connections  # noqa: E402

from celery_bgp.events.model import CommandEvent  # noqa: E402
from celery_bgp.events.repository import url_options  # noqa: E402
from celery_bgp.jobs.store import JobStoreEvents  # noqa: E402

from .store import DjangoJobStore  # noqa: E402

__all__ = ["DjangoDbEventRepository"]


class DjangoDbEventRepository(JobStoreEvents):
    """Events stored as the states of command jobs in a :class:`DjangoJobStore`."""

    store: DjangoJobStore

    def __init__(self, using: str = "default", environment: str = "default") -> None:
        super().__init__(DjangoJobStore(using=using), environment=environment)
        # Errors that blame one event of a batch (a value the column refuses, a NUL in
        # JSON, a broken constraint): the recorder then writes the events one by one.
        self.event_errors = (IntegrityError, DataError, TypeError, ValueError)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> DjangoDbEventRepository:
        """``django-db://`` (alias ``default``) or ``django-db://<alias>?environment=x``.

        Other options (such as ``expiry``, which does not apply: jobs are kept until
        retention purges them) are ignored.
        """
        opts = url_options(url, {"environment": options.get("environment", "default")})
        return cls(using=urlsplit(url).netloc or "default", environment=opts["environment"])

    def add_many(self, events: Sequence[CommandEvent]) -> None:
        try:
            super().add_many(events)
        except Exception:
            # The recorder's writer thread retries: make sure it gets a fresh
            # connection if this one broke (a restarted server, a dropped socket).
            connection = connections[self.store.using]
            if not connection.in_atomic_block:
                connection.close_if_unusable_or_obsolete()
            raise
