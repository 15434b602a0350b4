"""The daemons' tables for SQLAlchemy: the Django app's ``Daemon`` and ``DaemonLog``.

On the job tables' :data:`~.schema.metadata`; created by the Alembic revision
``bgp_0002`` (Django's ``0004_daemons``).
"""
from __future__ import annotations

from sqlalchemy import Column, Integer, SmallInteger, Table

from .schema import JSONValue, UTCDateTime, auto_id, exact_string, long_text, metadata

__all__ = ["daemon", "daemon_log"]

daemon = Table(
    "celery_bgp_daemon", metadata,
    Column("id", exact_string(255), primary_key=True),
    Column("name", exact_string(200), nullable=False),
    Column("environment", exact_string(64), nullable=False),
    Column("scope", exact_string(16), nullable=False),
    Column("instance", exact_string(255), nullable=False),
    Column("status", exact_string(16), nullable=False),
    Column("desired", exact_string(16), nullable=False),
    Column("generation", Integer(), nullable=False),
    Column("ended", Integer(), nullable=True),
    Column("worker", exact_string(255), nullable=True),
    Column("lease_holder", exact_string(255), nullable=True),
    Column("lease_expires", UTCDateTime(), nullable=True),
    Column("since", UTCDateTime(), nullable=True),
    Column("restarts", Integer(), nullable=False),
    Column("last_error", long_text(), nullable=True),
    Column("state", JSONValue(), nullable=True),
    Column("properties", JSONValue(), nullable=False),
    Column("modified", UTCDateTime(), nullable=True),
)

daemon_log = Table(
    "celery_bgp_daemonlog", metadata,
    auto_id(),
    Column("environment", exact_string(64), nullable=False),
    Column("daemon", exact_string(200), nullable=False),
    Column("worker", exact_string(255), nullable=True),
    Column("level", SmallInteger(), nullable=False),
    Column("message", long_text(), nullable=False),
    Column("exception", long_text(), nullable=True),
    Column("time", UTCDateTime(), nullable=False),
)
