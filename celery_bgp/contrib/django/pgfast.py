"""PostgreSQL: a job's hot path (create, read, transition) in plain SQL.

Every job is created once, read once by its worker, and crosses two transitions there
(Executing, then its final state), so their cost bounds the engine's throughput; the
ORM's SQL compilation and model building cost more than the round trips themselves
(a read by primary key: 1.3 ms through the ORM, 0.44 ms here). The read's values are
converted by the model fields themselves, as the ORM does.

A transition through the ORM costs seven round trips (BEGIN, SET LOCAL, SELECT ...
FOR NO KEY UPDATE, INSERT, UPDATE, SELECT continuations, COMMIT) and the SQL
compilation of each. Here, with psycopg 3's client-side binding (Django's default) and
the connection in autocommit, it is two, or one for a row the store has just read or
written (:class:`celery_bgp.jobs.pgwire.Seen`). A new job's row, first states and properties
are one multi-statement string, which PostgreSQL runs as one implicit transaction. Both
are the SQL the SQL stores share (:func:`celery_bgp.jobs.pgwire.transition` and
:func:`~celery_bgp.jobs.pgwire.insert`, called by the store itself, from the column
values of :mod:`celery_bgp.jobs.relational`): building the model instances only to
read their values back cost a fifth of an enqueue.

The rules are the ORM path's (:meth:`DjangoJobStore.transition`, both from
:mod:`celery_bgp.jobs.relational`). Used only for the store's own transactions; inside
a caller's ``atomic()`` the ORM path runs.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from celery_bgp.jobs import pgwire

from .models import Job
from .records import job_record

__all__ = ["available", "cursor", "get", "in_transaction", "wire"]


def available(connection: Any) -> bool:
    """True on PostgreSQL with psycopg 3, outside a transaction."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return False
    if not connection.get_autocommit():
        return False
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return is_psycopg3


def in_transaction(connection: Any) -> bool:
    """True on PostgreSQL with psycopg 3 inside a transaction (the caller's
    ``atomic()``, or autocommit off): a new job's insert string runs there too, in a
    savepoint, so a failed insert leaves the caller's transaction usable."""
    if connection.vendor != "postgresql":
        return False
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return is_psycopg3 and (connection.in_atomic_block or not connection.get_autocommit())


def cursor(connection: Any) -> Any:
    """A Django cursor on ``connection`` that binds parameters on the client.

    The fast path sends multi-statement strings, which PostgreSQL refuses from a
    statement whose parameters are bound on the server. That is Django's cursor when
    the alias sets ``OPTIONS["server_side_binding"]``: there the cursor is a
    ``psycopg.ClientCursor`` on the same connection, wrapped as Django wraps its own
    (:func:`_wrapped`).
    """
    if not connection.settings_dict.get("OPTIONS", {}).get("server_side_binding"):
        return connection.cursor()
    import psycopg

    return _wrapped(connection, psycopg.ClientCursor)


def _wrapped(connection: Any, kind: type) -> Any:
    """A psycopg cursor of ``kind`` on Django's connection, wrapped as Django wraps its
    own (execute wrappers, the debug query log, Django's exceptions), with the
    connection's time zone, as Django's ``create_cursor`` sets it."""
    from django.db.backends.postgresql.psycopg_any import register_tzloader
    from psycopg.pq import Format

    if hasattr(connection, "close_if_health_check_failed"):  # Django 5.1+, as cursor()
        connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    with connection.wrap_database_errors:
        raw = kind(connection.connection)
        loader = connection.connection.adapters.get_loader(_TIMESTAMPTZ, Format.TEXT)
        if connection.timezone != loader.timezone:
            register_tzloader(connection.timezone, raw)
    if connection.queries_logged:
        return connection.make_debug_cursor(raw)
    return connection.make_cursor(raw)


def wire(connection: Any) -> pgwire.Wire:
    """How the store's statements reach ``connection`` (:class:`~celery_bgp.jobs.pgwire.Wire`):
    single statements prepared where the alias lets psycopg prepare them (Django's
    ``OPTIONS["prepare_threshold"]``; Django leaves it off for poolers in transaction
    mode), multi-statement strings bound on the client."""
    prepared = connection.settings_dict.get("OPTIONS", {}).get("prepare_threshold") \
        is not None
    made = getattr(connection, "_bgp_wire", None)
    if made is None or (made.bound is not None) != prepared:  # made once per connection
        made = pgwire.Wire(lambda: cursor(connection))
        if prepared:
            import psycopg

            made = pgwire.Wire(made.client, lambda: _wrapped(connection, psycopg.Cursor),
                               lambda: _pipeline(connection))
        connection._bgp_wire = made
    return made


@contextlib.contextmanager
def _pipeline(connection: Any) -> Iterator[None]:
    """psycopg's pipeline on Django's connection, its errors raised as Django's."""
    with connection.wrap_database_errors, connection.connection.pipeline():
        yield


_TIMESTAMPTZ = 1184  # the type's OID (psycopg.adapters.types["timestamptz"].oid)
_JOB = Job._meta.db_table
_JOB_FIELDS = tuple(Job._meta.concrete_fields)


def _columns(fields: tuple[Any, ...]) -> str:
    return ", ".join(f'"{f.column}"' for f in fields)


_GET_SQL = f'SELECT {_columns(_JOB_FIELDS)} FROM "{_JOB}" WHERE id = %s'


class _Row:
    """Attribute access to one selected job row, as :func:`.records.job_record` reads it."""

    def __init__(self, values: tuple[Any, ...], connection: Any) -> None:
        for field, value in zip(_JOB_FIELDS, values, strict=True):
            if hasattr(field, "from_db_value"):  # JSON columns: decoded by their field
                value = field.from_db_value(value, None, connection)
            setattr(self, field.attname, value)


def get(connection: Any, job_id: str, seen: pgwire.Seen | None = None) -> Any:
    """The job's record, or None: one indexed read without the ORM. ``seen`` remembers
    the row's version for the next transition."""
    with wire(connection).single() as rows:
        rows.execute(_GET_SQL, [job_id])
        found = rows.fetchone()
    if not found:
        return None
    row = _Row(found, connection)
    if seen is not None:
        seen.remember(job_id, pgwire.LockedRow.of(row))
    return job_record(row)
