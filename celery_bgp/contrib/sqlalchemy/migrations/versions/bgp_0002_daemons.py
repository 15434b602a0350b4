"""The daemons' tables, as the Django app's migration 0004_daemons creates them.

Revision ID: bgp_0002
Revises: bgp_0001
Create Date: 2026-11-26

A Django project sharing the database records this with
``manage.py migrate celery_bgp 0004 --fake``.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from celery_bgp.contrib.sqlalchemy.migrations.versions.bgp_0001_initial import _Dialect
from celery_bgp.contrib.sqlalchemy.schema import UTCDateTime, exact_string, long_text

revision = "bgp_0002"
down_revision = "bgp_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    d = _Dialect(op.get_bind().dialect.name)
    op.create_table(
        "celery_bgp_daemon",
        sa.Column("id", exact_string(255), primary_key=True),
        sa.Column("name", exact_string(200), nullable=False),
        sa.Column("environment", exact_string(64), nullable=False),
        sa.Column("scope", exact_string(16), nullable=False),
        sa.Column("instance", exact_string(255), nullable=False),
        sa.Column("status", exact_string(16), nullable=False),
        sa.Column("desired", exact_string(16), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("ended", sa.Integer(), nullable=True),
        sa.Column("worker", exact_string(255), nullable=True),
        sa.Column("lease_holder", exact_string(255), nullable=True),
        sa.Column("lease_expires", UTCDateTime(), nullable=True),
        sa.Column("since", UTCDateTime(), nullable=True),
        sa.Column("restarts", sa.Integer(), nullable=False),
        sa.Column("last_error", long_text(), nullable=True),
        d.json("state", True),
        d.json("properties", False),
        sa.Column("modified", UTCDateTime(), nullable=True),
    )
    op.create_table(
        "celery_bgp_daemonlog",
        d.auto_id(),
        sa.Column("environment", exact_string(64), nullable=False),
        sa.Column("daemon", exact_string(200), nullable=False),
        sa.Column("worker", exact_string(255), nullable=True),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("message", long_text(), nullable=False),
        sa.Column("exception", long_text(), nullable=True),
        sa.Column("time", UTCDateTime(), nullable=False),
        **d.table_options(),
    )
    op.create_index("bgp_daemon_env_name", "celery_bgp_daemon", ["environment", "name"])
    op.create_index("bgp_daemonlog_daemon", "celery_bgp_daemonlog",
                    ["environment", "daemon", "id"])


def downgrade() -> None:
    op.drop_table("celery_bgp_daemonlog")
    op.drop_table("celery_bgp_daemon")
