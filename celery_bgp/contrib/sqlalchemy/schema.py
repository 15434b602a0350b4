"""The job store's tables for SQLAlchemy: the Django app's schema, column for column.

The tables are created by the Alembic migrations shipped beside this module
(``celery -A proj bgp db upgrade``), which write the DDL Django's migrations write on
each database; these definitions are what the store's queries are built from. The
column types store values the way Django's fields do, so a Django admin reads and
steers rows a SQLAlchemy service wrote, and the other way round:

- :class:`UTCDateTime`: ``timestamp with time zone`` (PostgreSQL), ``datetime(6)`` in
  UTC (MySQL/MariaDB), ``datetime`` text in UTC as Django writes it (SQLite).
- :class:`JSONValue`: ``jsonb``, ``json`` (MariaDB: ``longtext`` checked as JSON),
  ``text`` holding JSON (SQLite); Python None is SQL NULL.
- :func:`exact_string`: ``varchar(n)``, in the binary ``utf8mb4_bin`` collation on
  MySQL/MariaDB, so ids, names and property texts compare exactly everywhere.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.types import JSON, TypeEngine, UserDefinedType

__all__ = ["JSONValue", "UTCDateTime", "continuation", "exact_string", "job", "job_data",
           "job_log", "job_property", "job_state", "long_text", "metadata", "positive_int",
           "recurring_job"]

MYSQL = ("mysql", "mariadb")


class RawType(UserDefinedType):
    """A column type spelled exactly as given (SQLite's ``datetime``, ``integer unsigned``)."""

    cache_ok = True

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def get_col_spec(self, **kw: Any) -> str:
        return self.spec


class UTCDateTime(TypeDecorator):
    """Aware datetimes in, aware UTC datetimes out; stored as Django stores them."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(RawType("datetime"))
        if dialect.name in MYSQL:
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None or dialect.name == "postgresql":
            return value
        if value.tzinfo is None:
            raise ValueError(f"a naive datetime cannot be stored: {value!r}")
        naive = value.astimezone(timezone.utc).replace(tzinfo=None)
        return str(naive) if dialect.name == "sqlite" else naive  # Django's text form

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class JSONValue(TypeDecorator):
    """Any JSON value; None is SQL NULL (as Django's JSONField stores it)."""

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.JSONB(none_as_null=True))
        if dialect.name in MYSQL:
            return dialect.type_descriptor(mysql.JSON(none_as_null=True))
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if dialect.name == "postgresql" or dialect.name in MYSQL or value is None:
            return value
        return json.dumps(value)

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        if dialect.name == "sqlite" and value is not None:
            return json.loads(value)
        return value


def long_text() -> TypeEngine[Any]:
    """Django's TextField (``longtext`` on MySQL/MariaDB)."""
    return Text().with_variant(mysql.LONGTEXT(), *MYSQL)


def exact_string(length: int) -> TypeEngine[Any]:
    """``varchar(length)`` that compares case- and accent-sensitively everywhere."""
    return String(length).with_variant(mysql.VARCHAR(length, collation="utf8mb4_bin"), *MYSQL)


def positive_int() -> TypeEngine[Any]:
    """Django's PositiveIntegerField (the CHECK is added by the migrations)."""
    return (Integer().with_variant(mysql.INTEGER(unsigned=True), *MYSQL)
            .with_variant(RawType("integer unsigned"), "sqlite"))


def auto_id() -> Column[Any]:
    """Django's BigAutoField (``integer`` on SQLite, where only that autoincrements)."""
    return Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
                  autoincrement=True)


def _job_fk(name: str = "job_id", **kw: Any) -> Column[Any]:
    return Column(name, exact_string(64), ForeignKey("celery_bgp_job.id"), nullable=False, **kw)


metadata = MetaData()

job = Table(
    "celery_bgp_job", metadata,
    Column("id", exact_string(64), primary_key=True),
    Column("name", exact_string(255), nullable=False),
    Column("kind", exact_string(16), nullable=False),
    Column("queue", exact_string(255), nullable=False),
    Column("priority", SmallInteger(), nullable=False),
    Column("environment", exact_string(64), nullable=False),
    Column("state", exact_string(64), nullable=False),
    Column("created", UTCDateTime(), nullable=False),
    Column("modified", UTCDateTime(), nullable=False),
    Column("args", JSONValue(), nullable=False),
    Column("kwargs", JSONValue(), nullable=False),
    Column("middleware", JSONValue(), nullable=False),
    Column("options", JSONValue(), nullable=False),
    Column("result", JSONValue(), nullable=True),
    Column("execution_id", exact_string(64), nullable=True),
    Column("attempt", positive_int(), nullable=False),
    Column("worker", exact_string(255), nullable=True),
    Column("lock_holder", exact_string(255), nullable=True),
    Column("lock_acquired", UTCDateTime(), nullable=True),
    Column("lock_heartbeat", UTCDateTime(), nullable=True),
    Column("lock_expires", UTCDateTime(), nullable=True),
    Column("cancel_requested", UTCDateTime(), nullable=True),
    Column("sequence", positive_int(), nullable=False),
    Column("life_order", exact_string(40), nullable=False),
)

continuation = Table(
    "celery_bgp_continuation", metadata,
    auto_id(),
    Column("on", exact_string(64), nullable=False),
    Column("delete_on_other", Boolean(), nullable=False),
    _job_fk("child_id"),
    _job_fk("parent_id"),
)

job_data = Table(
    "celery_bgp_jobdata", metadata,
    auto_id(),
    Column("key", exact_string(255), nullable=False),
    Column("value", JSONValue(), nullable=True),
    _job_fk(),
)

job_log = Table(
    "celery_bgp_joblog", metadata,
    auto_id(),
    Column("level", SmallInteger(), nullable=False),
    Column("message", long_text(), nullable=False),
    Column("exception", long_text(), nullable=True),
    Column("time", UTCDateTime(), nullable=False),
    _job_fk(),
)

job_property = Table(
    "celery_bgp_jobproperty", metadata,
    auto_id(),
    Column("name", exact_string(255), nullable=False),
    Column("value_text", exact_string(255), nullable=True),
    Column("value_int", BigInteger(), nullable=True),
    Column("value_float", Double().with_variant(RawType("real"), "sqlite"), nullable=True),
    Column("value_bool", Boolean(), nullable=True),
    Column("value_date", UTCDateTime(), nullable=True),
    _job_fk(),
)

job_state = Table(
    "celery_bgp_jobstate", metadata,
    auto_id(),
    Column("sequence", positive_int(), nullable=False),
    Column("name", exact_string(64), nullable=False),
    Column("elected", UTCDateTime(), nullable=False),
    Column("reason", long_text(), nullable=True),
    Column("data", JSONValue(), nullable=False),
    _job_fk(),
    Column("life_order", exact_string(40), nullable=True),
)

#: A recurring job's pause and last run (Django's ``RecurringJob``; Alembic ``bgp_0004``).
recurring_job = Table(
    "celery_bgp_recurringjob", metadata,
    auto_id(),
    Column("environment", exact_string(64), nullable=False),
    Column("name", exact_string(200), nullable=False),
    Column("paused", Boolean(), nullable=False),
    Column("paused_by", exact_string(255), nullable=True),
    Column("paused_at", UTCDateTime(), nullable=True),
    Column("last_job", exact_string(64), nullable=True),
    Column("last_run", UTCDateTime(), nullable=True),
    Column("last_beat", UTCDateTime(), nullable=True),
    UniqueConstraint("environment", "name", name="bgp_recurring_env_name"),
)
