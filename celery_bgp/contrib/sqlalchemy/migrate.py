"""Create and upgrade the job store's tables with the Alembic migrations shipped here.

``celery -A proj bgp db upgrade`` calls :func:`upgrade` with the app's job store; from
code, ``upgrade("postgresql+psycopg://...")`` or ``upgrade(engine)``. The version is
kept in the ``celery_bgp_alembic_version`` table, apart from a project's own Alembic
history. Migrations take locks on the job tables: run them before the workers start.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from celery_bgp.extras import require

require("alembic", "sqlalchemy", "The job store's migrations")

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402
from alembic.runtime.migration import MigrationContext  # noqa: E402
from alembic.script import ScriptDirectory  # noqa: E402
from sqlalchemy.engine import Connection, Engine  # noqa: E402

__all__ = ["SCRIPTS", "VERSION_TABLE", "config", "current", "head", "upgrade"]

SCRIPTS = Path(__file__).with_name("migrations")
VERSION_TABLE = "celery_bgp_alembic_version"


def config(connection: Connection | None = None) -> Config:
    """An Alembic config of the shipped migrations (on ``connection`` if given)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPTS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _engine(bind: Any) -> tuple[Engine, bool]:
    from .store import engine_from_url

    if isinstance(bind, Engine):
        return bind, False
    if isinstance(bind, str):
        return engine_from_url(bind), True
    store_engine = getattr(bind, "engine", None)  # a SQLAlchemyJobStore
    if isinstance(store_engine, Engine):
        return store_engine, False
    raise TypeError(f"cannot migrate {bind!r}: pass an Engine, a URL or a SQLAlchemyJobStore")


def upgrade(bind: Any, revision: str = "head") -> str | None:
    """Migrate the job store's tables to ``revision``; return the revision now applied."""
    engine, own = _engine(bind)
    try:
        with engine.begin() as connection:
            command.upgrade(config(connection), revision)
        return current(engine)
    finally:
        if own:
            engine.dispose()


def current(bind: Any) -> str | None:
    """The applied revision, or None for a database without the tables."""
    engine, own = _engine(bind)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection,
                                                 opts={"version_table": VERSION_TABLE})
            return context.get_current_revision()
    finally:
        if own:
            engine.dispose()


def head() -> str | None:
    """The newest revision shipped."""
    return ScriptDirectory.from_config(config()).get_current_head()
