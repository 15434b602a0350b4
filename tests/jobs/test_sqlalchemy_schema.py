"""One schema, two tools: the Django app's migrations and the SQLAlchemy store's Alembic
migrations make identical tables on PostgreSQL, MariaDB and SQLite.

For each database, one new database is migrated by Django (``manage.py migrate
celery_bgp`` in a subprocess with only the app installed) and another by Alembic
(``celery_bgp.contrib.sqlalchemy.migrate.upgrade``); SQLAlchemy's inspector then reads
both: tables, columns (order, type, collation, nullability, default), primary keys,
foreign keys (names, targets, deferrability), indexes (columns, uniqueness, partial
conditions), unique constraints and CHECK constraints must be equal. Both databases are
the test's own and are dropped at the end.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

from celery_bgp.contrib.sqlalchemy.migrate import VERSION_TABLE, current, head, upgrade
from tests.helpers.sqlalchemy_databases import require, temporary_database
from tests.helpers.workers import ROOT

pytestmark = pytest.mark.integration

KINDS = ["postgresql", "mariadb", "sqlite"]
BOOKKEEPING = {"django_migrations", VERSION_TABLE}


def django_migrate(url: str) -> None:
    """``migrate celery_bgp`` on ``url``'s database, in a process of its own."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        database = {"ENGINE": "django.db.backends.postgresql", "NAME": parsed.database,
                    "USER": parsed.username, "HOST": parsed.host, "PORT": parsed.port}
    elif parsed.get_backend_name() in ("mysql", "mariadb"):
        database = {"ENGINE": "django.db.backends.mysql", "NAME": parsed.database,
                    "USER": parsed.username, "PASSWORD": "", "HOST": parsed.host,
                    "PORT": parsed.port, "OPTIONS": {"ssl_disabled": True}}
    else:
        database = {"ENGINE": "django.db.backends.sqlite3", "NAME": parsed.database}
    script = textwrap.dedent(f"""
        import json, pymysql, django
        from django.conf import settings
        from django.core.management import call_command
        pymysql.install_as_MySQLdb()
        settings.configure(DATABASES={{"default": json.loads({json.dumps(json.dumps(database))})}},
                           INSTALLED_APPS=["celery_bgp.contrib.django"], USE_TZ=True,
                           DEFAULT_AUTO_FIELD="django.db.models.BigAutoField")
        django.setup()
        call_command("migrate", "celery_bgp", verbosity=0)
    """)
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def schema(url: str) -> dict[str, Any]:
    """Everything the inspector says about the job tables, comparable with ``==``."""
    engine = create_engine(url)
    try:
        found: dict[str, Any] = {}
        inspector = inspect(engine)
        for table in sorted(set(inspector.get_table_names()) - BOOKKEEPING):
            columns = [{**column, "type": repr(column["type"])}
                       for column in inspector.get_columns(table)]
            for column in columns:
                column.pop("comment", None)
            indexes = sorted(
                ({**index, "dialect_options": {k: str(v) for k, v in
                                               index.get("dialect_options", {}).items()}}
                 for index in inspector.get_indexes(table)), key=lambda i: i["name"])
            foreign_keys = sorted(inspector.get_foreign_keys(table),
                                  key=lambda fk: fk["constrained_columns"])
            if engine.dialect.name == "sqlite":
                _sqlite_deferrable(engine, table, foreign_keys)
            found[table] = {
                "columns": columns,
                "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
                "foreign_keys": foreign_keys,
                "indexes": indexes,
                "unique": sorted(inspector.get_unique_constraints(table),
                                 key=lambda u: u["name"] or ""),
                "checks": sorted((c["name"], c["sqltext"])
                                 for c in inspector.get_check_constraints(table)),
            }
        return found
    finally:
        engine.dispose()


def _sqlite_deferrable(engine, table: str, foreign_keys: list[dict[str, Any]]) -> None:
    """SQLite's reflection reads DEFERRABLE from ``FOREIGN KEY (...)`` clauses only, not
    from Django's inline ``col ... REFERENCES ...``: read both forms from the DDL."""
    with engine.connect() as connection:
        ddl = connection.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE name = ?", (table,)).scalar_one()
    for fk in foreign_keys:
        (column,) = fk["constrained_columns"]
        inline = rf'"?{column}"?\s[^,]*?REFERENCES[^,]*?DEFERRABLE INITIALLY DEFERRED'
        clause = rf'FOREIGN KEY\s*\(\s*"?{column}"?\s*\)[^,]*?DEFERRABLE INITIALLY DEFERRED'
        deferred = bool(re.search(inline, ddl) or re.search(clause, ddl))
        fk["options"] = {"deferrable": True, "initially": "DEFERRED"} if deferred else {}


@pytest.mark.parametrize("kind", KINDS)
def test_django_and_alembic_make_the_same_schema(kind):
    require(kind)
    with temporary_database(kind, "bgp_dj") as by_django, \
            temporary_database(kind, "bgp_al") as by_alembic:
        django_migrate(by_django)
        assert upgrade(by_alembic) == head() == current(by_alembic)
        made_by_django, made_by_alembic = schema(by_django), schema(by_alembic)
        assert set(made_by_django) == {"celery_bgp_job", "celery_bgp_jobstate",
                                       "celery_bgp_jobproperty", "celery_bgp_jobdata",
                                       "celery_bgp_joblog", "celery_bgp_continuation",
                                       "celery_bgp_daemon", "celery_bgp_daemonlog",
                                       "celery_bgp_recurringjob"}
        for table, expected in made_by_django.items():
            for aspect, value in expected.items():
                assert made_by_alembic[table][aspect] == value, (table, aspect)
        assert made_by_alembic == made_by_django
        assert upgrade(by_alembic) == head()  # upgrading again changes nothing
