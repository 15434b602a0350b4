"""The recurring jobs' table, as the Django app's migration 0008_recurring_jobs creates it.

Revision ID: bgp_0004
Revises: bgp_0003
Create Date: 2026-11-26

One row per (environment, recurring job): its pause and its last run. A Django project
sharing the database records this with ``manage.py migrate celery_bgp 0008 --fake``.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from celery_bgp.contrib.sqlalchemy.migrations.versions.bgp_0001_initial import _Dialect
from celery_bgp.contrib.sqlalchemy.schema import UTCDateTime, exact_string

revision = "bgp_0004"
down_revision = "bgp_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    d = _Dialect(op.get_bind().dialect.name)
    op.create_table(
        "celery_bgp_recurringjob",
        d.auto_id(),
        sa.Column("environment", exact_string(64), nullable=False),
        sa.Column("name", exact_string(200), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("paused_by", exact_string(255), nullable=True),
        sa.Column("paused_at", UTCDateTime(), nullable=True),
        sa.Column("last_job", exact_string(64), nullable=True),
        sa.Column("last_run", UTCDateTime(), nullable=True),
        sa.Column("last_beat", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("environment", "name", name="bgp_recurring_env_name"),
        **d.table_options(),
    )


def downgrade() -> None:
    op.drop_table("celery_bgp_recurringjob")
