"""Job store fixtures: every store implementation runs the same contract suite.

The Django store runs on PostgreSQL (alias ``default``), SQLite (``sqlite``, a
temp file) and MariaDB (``mariadb``); the SQLAlchemy store on a PostgreSQL and a
MariaDB database and an SQLite file of its own, migrated with its Alembic
migrations. A database that is down is skipped locally and fails under CI
(``tests.helpers.servers``).
"""
from __future__ import annotations

import pytest

from celery_bgp.jobs.memory import MemoryJobStore
from tests.helpers.databases import (
    DJANGO_DATABASES,
    close_connections_at_thread_end,
    django_db_mark,
    require_database,
)
from tests.helpers.sqlalchemy_databases import SA_DATABASES, MigratedDatabases


def _memory(request):
    return MemoryJobStore()


def _django(alias):
    def factory(request):
        from celery_bgp.contrib.django.store import DjangoJobStore

        require_database(alias)
        close_connections_at_thread_end(request.getfixturevalue("monkeypatch"))
        return DjangoJobStore(using=alias)

    return factory


def _sqlalchemy(kind):
    def factory(request):
        from celery_bgp.contrib.sqlalchemy import SQLAlchemyJobStore

        return SQLAlchemyJobStore(request.getfixturevalue("sa_databases").url(kind))

    return factory


@pytest.fixture(scope="session")
def sa_databases():
    """The SQLAlchemy store's databases (one per kind, made when first asked for)."""
    databases = MigratedDatabases()
    yield databases
    databases.close()


#: name -> factory(request) -> JobStore.
STORE_FACTORIES = {"memory": _memory,
                   **{name: _django(spec[0]) for name, spec in DJANGO_DATABASES.items()},
                   **{name: _sqlalchemy(kind) for name, kind in SA_DATABASES.items()}}
#: name -> marks of that param (the Django stores need their test database).
STORE_MARKS = {name: django_db_mark(spec[0]) for name, spec in DJANGO_DATABASES.items()}


@pytest.fixture(params=[pytest.param(name, marks=STORE_MARKS.get(name, ()))
                        for name in sorted(STORE_FACTORIES)])
def job_store(request):
    store = STORE_FACTORIES[request.param](request)
    yield store
    store.close()
