"""Databases of the SQLAlchemy job store's tests: created for the session, then dropped.

Each database is the suite's own (a random name on the loopback PostgreSQL and MariaDB,
a temp file for SQLite), migrated with the package's Alembic migrations; nothing a
developer keeps on the shared servers is touched.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator

from tests.helpers.servers import MARIADB_HOST, MARIADB_PORT, PG_HOST, PG_PORT, require_server

#: Store param name -> database kind.
SA_DATABASES = {"sqlalchemy": "postgresql", "sqlalchemy-mariadb": "mariadb",
                "sqlalchemy-sqlite": "sqlite"}
SERVERS = {"postgresql": ("PostgreSQL", PG_HOST, PG_PORT),
           "mariadb": ("MariaDB", MARIADB_HOST, MARIADB_PORT)}


def require(kind: str) -> None:
    """Skip (fail under CI) when the server of ``kind`` is down."""
    if kind in SERVERS:
        require_server(*SERVERS[kind])


@contextlib.contextmanager
def temporary_database(kind: str, prefix: str = "bgp_sa") -> Iterator[str]:
    """A new, empty database of ``kind``; yields its SQLAlchemy URL; dropped at the end."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    if kind == "postgresql":
        import psycopg

        admin = f"host={PG_HOST} port={PG_PORT} user=postgres dbname=postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{name}"
        finally:
            _forget(name)
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    elif kind == "mariadb":
        import pymysql

        def admin():
            return pymysql.connect(host=MARIADB_HOST, port=MARIADB_PORT, user="root",
                                   password="", ssl_disabled=True, autocommit=True)

        with admin() as conn, conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        try:
            yield (f"mysql+pymysql://root@{MARIADB_HOST}:{MARIADB_PORT}/{name}"
                   "?charset=utf8mb4&ssl_disabled=true")
        finally:
            _forget(name)
            with admin() as conn, conn.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
    elif kind == "sqlite":
        folder = tempfile.mkdtemp(prefix=f"{name}-")
        try:
            yield f"sqlite:///{os.path.join(folder, 'jobs.db')}"
        finally:
            _forget(name)
            shutil.rmtree(folder, ignore_errors=True)
    else:
        raise ValueError(kind)


def _forget(name: str) -> None:
    """Close the pooled connections the store's engines hold to database ``name``."""
    from celery_bgp.contrib.sqlalchemy import engines as store

    with store._engines_lock:
        for url in [u for u in store._engines if name in u]:
            store._engines.pop(url).dispose()


class MigratedDatabases:
    """One migrated database per kind, made on first use, dropped by :meth:`close`."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._urls: dict[str, str] = {}

    def url(self, kind: str) -> str:
        if kind not in self._urls:
            from celery_bgp.contrib.sqlalchemy.migrate import upgrade

            require(kind)
            url = self._stack.enter_context(temporary_database(kind))
            upgrade(url)
            self._urls[kind] = url
        return self._urls[kind]

    def close(self) -> None:
        self._stack.close()
