"""Job store fixtures: every store implementation runs the same contract suite.

The Django store runs on PostgreSQL (alias ``default``), SQLite (``sqlite``, a
temp file) and MariaDB (``mariadb``). A database that is down is skipped locally
and fails under CI (``tests.helpers.servers``).
"""
from __future__ import annotations

import threading

import pytest
from django.conf import settings

from celery_bgp.jobs.memory import MemoryJobStore
from tests.helpers.servers import (
    MARIADB_HOST,
    MARIADB_PORT,
    PG_HOST,
    PG_PORT,
    require_server,
)


def _memory(request):
    return MemoryJobStore()


def close_connections_at_thread_end(monkeypatch) -> None:
    """Threads the tests start close their own DB connections when they end.

    Django opens one connection per thread; left open, they would hold the test
    database when pytest-django drops it.
    """
    from django.db import connections

    original = threading.Thread.run

    def run(self):
        try:
            original(self)
        finally:
            connections.close_all()

    monkeypatch.setattr(threading.Thread, "run", run)


#: Django store params: name -> (database alias, vendor, server name, host, port).
DJANGO_DATABASES = {
    "django": ("default", "postgresql", "PostgreSQL", PG_HOST, PG_PORT),
    "django-mariadb": ("mariadb", "mysql", "MariaDB", MARIADB_HOST, MARIADB_PORT),
    "django-sqlite": ("sqlite", "sqlite", None, None, None),
}


def _django(name):
    alias, vendor, server, host, port = DJANGO_DATABASES[name]

    def factory(request):
        from django.db import connections

        from celery_bgp.contrib.django.store import DjangoJobStore

        if server is not None:
            require_server(server, host, port)
        assert connections[alias].vendor == vendor, f"{alias} is not {vendor}"
        close_connections_at_thread_end(request.getfixturevalue("monkeypatch"))
        return DjangoJobStore(using=alias)

    return factory


def django_db_mark(alias: str):
    """The pytest mark that gives a test ``alias``'s test database (threads included)."""
    if alias not in settings.DATABASES:
        return pytest.mark.skip(reason=f"database {alias!r} is not configured (server down)")
    return pytest.mark.django_db(transaction=True, databases=[alias])


#: name -> factory(request) -> JobStore.
STORE_FACTORIES = {"memory": _memory, **{name: _django(name) for name in DJANGO_DATABASES}}
#: name -> marks of that param (the Django stores need their test database).
STORE_MARKS = {name: django_db_mark(spec[0]) for name, spec in DJANGO_DATABASES.items()}


@pytest.fixture(params=[pytest.param(name, marks=STORE_MARKS.get(name, ()))
                        for name in sorted(STORE_FACTORIES)])
def job_store(request):
    store = STORE_FACTORIES[request.param](request)
    yield store
    store.close()
