"""Drop the (state, lock_expires) index, as the Django app's migration 0005 does.

Revision ID: bgp_0003
Revises: bgp_0002
Create Date: 2026-11-26

A heartbeat then writes no index (a HOT update on PostgreSQL); the monitor finds the
few Executing jobs through (state, created). A Django project sharing the database
records this with ``manage.py migrate celery_bgp 0005 --fake``.
"""
from __future__ import annotations

from alembic import op

revision = "bgp_0003"
down_revision = "bgp_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("bgp_job_lock_expires", table_name="celery_bgp_job")


def downgrade() -> None:
    op.create_index("bgp_job_lock_expires", "celery_bgp_job", ["state", "lock_expires"])
