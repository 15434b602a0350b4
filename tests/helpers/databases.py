"""The Django database aliases the job store is tested on, and how tests get them."""
from __future__ import annotations

import threading

import pytest
from django.conf import settings

from tests.helpers.servers import MARIADB_HOST, MARIADB_PORT, PG_HOST, PG_PORT, require_server

#: Store param name -> (database alias, vendor, server name, host, port).
DJANGO_DATABASES = {
    "django": ("default", "postgresql", "PostgreSQL", PG_HOST, PG_PORT),
    "django-mariadb": ("mariadb", "mysql", "MariaDB", MARIADB_HOST, MARIADB_PORT),
    "django-sqlite": ("sqlite", "sqlite", None, None, None),
}


def django_db_mark(alias: str) -> pytest.MarkDecorator:
    """The mark that gives a test ``alias``'s test database (usable from threads).

    An alias missing from the settings (its server was down when they loaded;
    never under CI) skips the test.
    """
    if alias not in settings.DATABASES:
        return pytest.mark.skip(reason=f"database {alias!r} is not configured (server down)")
    return pytest.mark.django_db(transaction=True, databases=[alias])


def alias_params() -> list:
    """``pytest.param(alias)`` for each tested database, with its mark."""
    return [pytest.param(spec[0], marks=django_db_mark(spec[0]), id=name)
            for name, spec in DJANGO_DATABASES.items()]


def require_database(alias: str) -> None:
    """Skip (fail under CI) unless ``alias`` is the server it should be."""
    from django.db import connections

    for _, (known, vendor, server, host, port) in DJANGO_DATABASES.items():
        if known == alias:
            if server is not None:
                require_server(server, host, port)
            assert connections[alias].vendor == vendor, f"{alias} is not {vendor}"


def close_connections_at_thread_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads started by the test close their own DB connections when they end.

    Django opens one connection per thread; left open, they would hold the test
    database when pytest-django drops it.
    """
    from django.db import connections

    original = threading.Thread.run

    def run(self: threading.Thread) -> None:
        try:
            original(self)
        finally:
            connections.close_all()

    monkeypatch.setattr(threading.Thread, "run", run)
