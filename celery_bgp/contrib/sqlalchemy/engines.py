"""The Engines of ``db+<url>`` job store settings: one per database and process.

No driver named: psycopg 3 for PostgreSQL, PyMySQL for MySQL/MariaDB. MySQL/MariaDB
sessions read committed (as Django's); SQLite waits up to 30 s for the write lock and
enforces foreign keys. psycopg prepares nothing unless the URL says
``?prepare_threshold=N`` (as Django's ``OPTIONS``). A forked child (a prefork pool
process) drops the connections it inherited and opens its own.
"""
from __future__ import annotations

import contextlib
import os
import threading
import weakref
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine, make_url

__all__ = ["DEFAULT_DRIVERS", "engine_from_url", "track", "unavailable_errors"]

MYSQL = ("mysql", "mariadb")
#: Drivers used when a ``db+`` URL names none.
DEFAULT_DRIVERS = {"postgresql": "psycopg", "postgres": "psycopg", "mysql": "pymysql",
                   "mariadb": "pymysql"}

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()
_all_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


def engine_from_url(url: str) -> Engine:
    """The process's Engine for a ``db+<url>`` (or plain SQLAlchemy) URL, made once.

    No driver named: psycopg 3 for PostgreSQL, PyMySQL for MySQL/MariaDB. MySQL/MariaDB
    sessions read committed (as Django's); SQLite waits up to 30 s for the write lock
    and enforces foreign keys. With psycopg, ``?prepare_threshold=N`` lets it prepare a
    statement run N times (the store's hot path among them); without it, nothing is.
    """
    plain = url[3:] if url.startswith("db+") else url
    with _engines_lock:
        found = _engines.get(plain)
        if found is not None:
            return found
        parsed = make_url(plain)
        backend = parsed.get_backend_name()
        if "+" not in parsed.drivername and backend in DEFAULT_DRIVERS:
            name = "postgresql" if backend == "postgres" else backend
            parsed = parsed.set(drivername=f"{name}+{DEFAULT_DRIVERS[backend]}")
        options: dict[str, Any] = {"pool_pre_ping": False}
        if backend in ("postgresql", "postgres") and parsed.get_driver_name() == "psycopg":
            # As Django: nothing prepared unless asked (a pooler in transaction mode
            # loses prepared statements); ``?prepare_threshold=N`` asks.
            threshold = _prepare_threshold(parsed.query.get("prepare_threshold"))
            parsed = parsed.difference_update_query(["prepare_threshold"])
            options["connect_args"] = {"prepare_threshold": threshold}
        if backend in MYSQL:
            options["isolation_level"] = "READ COMMITTED"
        if backend == "sqlite":
            options["connect_args"] = {"timeout": 30}
        engine = create_engine(parsed, **options)
        if backend == "sqlite":
            event.listen(engine, "connect", _sqlite_foreign_keys)
        _engines[plain] = engine
        _all_engines.add(engine)
        return engine


def _prepare_threshold(value: Any) -> int | None:
    """psycopg's ``prepare_threshold`` from a URL's query (a string, or None)."""
    if value is None or str(value).lower() in ("", "none"):
        return None
    try:
        threshold = int(value)
    except (TypeError, ValueError):
        threshold = -1
    if threshold < 0:
        raise ValueError(f"prepare_threshold={value!r} in the job store URL: a whole "
                         "number of runs after which psycopg prepares a statement, or none")
    return threshold


def _sqlite_foreign_keys(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _after_fork() -> None:
    """A forked child (a prefork pool process) never uses its parent's connections."""
    for engine in list(_all_engines):
        engine.dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def unavailable_errors(base: tuple[type[BaseException], ...]) -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [sa_exc.OperationalError, sa_exc.InterfaceError,
                                        sa_exc.TimeoutError]
    with contextlib.suppress(ImportError):
        import psycopg

        found += [psycopg.OperationalError, psycopg.InterfaceError]
    return (*found, *base)


def track(engine: Engine) -> None:
    """Dispose ``engine``'s inherited connections in forked children too."""
    _all_engines.add(engine)

