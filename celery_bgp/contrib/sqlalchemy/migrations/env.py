"""Alembic environment of the job store's migrations (``celery -A proj bgp db upgrade``).

The version is kept in ``celery_bgp_alembic_version``, never in a project's own
``alembic_version``: these migrations live beside the project's, not in its history.
Run through :func:`celery_bgp.contrib.sqlalchemy.migrate.upgrade`, which passes the
connection in ``config.attributes["connection"]``; ``alembic -c <ini>`` with
``script_location = celery_bgp.contrib.sqlalchemy:migrations`` and ``sqlalchemy.url``
works too (``--sql`` prints the DDL).
"""
from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

VERSION_TABLE = "celery_bgp_alembic_version"

config = context.config


def run() -> None:
    if context.is_offline_mode():
        context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True,
                          version_table=VERSION_TABLE)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url"))
        with engine.connect() as connection:
            _migrate(connection)
        engine.dispose()
    else:
        _migrate(connection)


def _migrate(connection) -> None:
    context.configure(connection=connection, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


run()
