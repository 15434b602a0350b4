"""The SQLAlchemy job store: tracked jobs for any Celery project, no Django needed.

``BackgroundProcessing(app, job_store="db+postgresql://user@host/db", job_modules=[...])``
(also ``db+mysql://``, ``db+mariadb://``, ``db+sqlite:///jobs.db``), or
``job_store=engine`` / ``SQLAlchemyJobStore(engine)``. The tables are the Django app's
(a Django admin can steer the jobs); ``celery -A proj bgp db upgrade`` creates and
upgrades them with the Alembic migrations shipped here. Needs ``celery-bgp[sqlalchemy]``.
"""
from __future__ import annotations

from celery_bgp.extras import require

require("sqlalchemy", "sqlalchemy", "The SQLAlchemy job store")

from .store import SQLAlchemyJobStore, engine_from_url  # noqa: E402

__all__ = ["SQLAlchemyJobStore", "engine_from_url"]
