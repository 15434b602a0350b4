"""The job store's tables, as the Django app's migrations 0001-0003 create them.

Revision ID: bgp_0001
Revises:
Create Date: 2026-11-27

Same tables, columns, types, nullability, CHECKs, indexes (partial where the database
has them), unique constraints and foreign keys, with Django's names, on PostgreSQL,
MySQL/MariaDB and SQLite (``tests/jobs/test_sqlalchemy_schema.py`` compares the two).
Later Django migrations of ``celery_bgp.contrib.django`` get an Alembic revision
each. A schema made here is Django's ``0003``: a Django project sharing the database
records that with ``manage.py migrate celery_bgp 0003 --fake``.
"""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from celery_bgp.contrib.sqlalchemy.schema import (
    JSONValue,
    UTCDateTime,
    exact_string,
    long_text,
    positive_int,
)

revision = "bgp_0001"
down_revision = None
branch_labels = None
depends_on = None

#: Django's foreign key constraint names (hashed from table and column names).
FOREIGN_KEYS = {
    ("celery_bgp_continuation", "child_id"): "celery_bgp_continuation_child_id_cd3a1fce",
    ("celery_bgp_continuation", "parent_id"): "celery_bgp_continuation_parent_id_8f4d6ab8",
    ("celery_bgp_jobdata", "job_id"): "celery_bgp_jobdata_job_id_0889f628",
    ("celery_bgp_joblog", "job_id"): "celery_bgp_joblog_job_id_5eecb011",
    ("celery_bgp_jobproperty", "job_id"): "celery_bgp_jobproperty_job_id_e1fb7c44",
    ("celery_bgp_jobstate", "job_id"): "celery_bgp_jobstate_job_id_d78a3f7c",
}
TABLES = ("celery_bgp_continuation", "celery_bgp_jobdata", "celery_bgp_joblog",
          "celery_bgp_jobproperty", "celery_bgp_jobstate", "celery_bgp_job")


class _Dialect:
    """What differs per database in Django's DDL."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sqlite = name == "sqlite"
        self.postgresql = name == "postgresql"
        self.mysql = name in ("mysql", "mariadb")

    def q(self, column: str) -> str:
        return f"`{column}`" if self.mysql else f'"{column}"'

    def positive(self, name: str) -> sa.Column[Any]:
        return sa.Column(name, positive_int(), sa.CheckConstraint(f"{self.q(name)} >= 0"),
                         nullable=False)

    def json(self, name: str, nullable: bool) -> sa.Column[Any]:
        checks = []
        if self.sqlite:  # Django checks JSON text on SQLite (MariaDB's json type does too)
            checks.append(sa.CheckConstraint(
                f"(JSON_VALID({self.q(name)}) OR {self.q(name)} IS NULL)"))
        return sa.Column(name, JSONValue(), *checks, nullable=nullable)

    def auto_id(self) -> sa.Column[Any]:
        if self.sqlite:
            return sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True)
        if self.postgresql:
            return sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True)
        return sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True)

    def job_fk(self, table: str, column: str) -> list[Any]:
        """The column and its foreign key, as Django declares them on this database."""
        options: dict[str, Any] = {}
        if not self.mysql:
            options.update(deferrable=True, initially="DEFERRED")
        if not self.sqlite:  # Django's SQLite references are inline, without a name
            options["name"] = f"{FOREIGN_KEYS[table, column]}_fk_celery_bgp_job_id"
        return [sa.Column(column, exact_string(64), nullable=False),
                sa.ForeignKeyConstraint([column], ["celery_bgp_job.id"], **options)]

    def table_options(self) -> dict[str, Any]:
        return {"sqlite_autoincrement": True} if self.sqlite else {}

    def partial(self, column: str) -> dict[str, Any]:
        """Django's TypedValueIndex: partial where the database can."""
        where = sa.text(f"{self.q(column)} IS NOT NULL")
        if self.postgresql:
            return {"postgresql_where": where}
        if self.sqlite:
            return {"sqlite_where": where}
        return {}


def upgrade() -> None:
    d = _Dialect(op.get_bind().dialect.name)
    op.create_table(
        "celery_bgp_job",
        sa.Column("id", exact_string(64), primary_key=True),
        sa.Column("name", exact_string(255), nullable=False),
        sa.Column("kind", exact_string(16), nullable=False),
        sa.Column("queue", exact_string(255), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("environment", exact_string(64), nullable=False),
        sa.Column("state", exact_string(64), nullable=False),
        sa.Column("created", UTCDateTime(), nullable=False),
        sa.Column("modified", UTCDateTime(), nullable=False),
        d.json("args", False), d.json("kwargs", False), d.json("middleware", False),
        d.json("options", False), d.json("result", True),
        sa.Column("execution_id", exact_string(64), nullable=True),
        d.positive("attempt"),
        sa.Column("worker", exact_string(255), nullable=True),
        sa.Column("lock_holder", exact_string(255), nullable=True),
        sa.Column("lock_acquired", UTCDateTime(), nullable=True),
        sa.Column("lock_heartbeat", UTCDateTime(), nullable=True),
        sa.Column("lock_expires", UTCDateTime(), nullable=True),
        sa.Column("cancel_requested", UTCDateTime(), nullable=True),
        d.positive("sequence"),
        sa.Column("life_order", exact_string(40), nullable=False),
    )
    op.create_table(
        "celery_bgp_continuation",
        d.auto_id(),
        sa.Column("on", exact_string(64), nullable=False),
        sa.Column("delete_on_other", sa.Boolean(), nullable=False),
        *d.job_fk("celery_bgp_continuation", "child_id"),
        *d.job_fk("celery_bgp_continuation", "parent_id"),
        **d.table_options(),
    )
    op.create_table(
        "celery_bgp_jobdata",
        d.auto_id(),
        sa.Column("key", exact_string(255), nullable=False),
        d.json("value", True),
        *d.job_fk("celery_bgp_jobdata", "job_id"),
        sa.UniqueConstraint("job_id", "key", name="bgp_jobdata_job_key"),
        **d.table_options(),
    )
    op.create_table(
        "celery_bgp_joblog",
        d.auto_id(),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("message", long_text(), nullable=False),
        sa.Column("exception", long_text(), nullable=True),
        sa.Column("time", UTCDateTime(), nullable=False),
        *d.job_fk("celery_bgp_joblog", "job_id"),
        **d.table_options(),
    )
    value_float = sa.Double() if not d.sqlite else sa.REAL()
    op.create_table(
        "celery_bgp_jobproperty",
        d.auto_id(),
        sa.Column("name", exact_string(255), nullable=False),
        sa.Column("value_text", exact_string(255), nullable=True),
        sa.Column("value_int", sa.BigInteger(), nullable=True),
        sa.Column("value_float", value_float, nullable=True),
        sa.Column("value_bool", sa.Boolean(), nullable=True),
        sa.Column("value_date", UTCDateTime(), nullable=True),
        *d.job_fk("celery_bgp_jobproperty", "job_id"),
        sa.UniqueConstraint("job_id", "name", name="bgp_jobprop_job_name"),
        **d.table_options(),
    )
    op.create_table(
        "celery_bgp_jobstate",
        d.auto_id(),
        d.positive("sequence"),
        sa.Column("name", exact_string(64), nullable=False),
        sa.Column("elected", UTCDateTime(), nullable=False),
        sa.Column("reason", long_text(), nullable=True),
        d.json("data", False),
        *d.job_fk("celery_bgp_jobstate", "job_id"),
        sa.Column("life_order", exact_string(40), nullable=True),
        sa.UniqueConstraint("job_id", "sequence", name="bgp_jobstate_job_seq"),
        sa.UniqueConstraint("job_id", "life_order", name="bgp_jobstate_job_event"),
        **d.table_options(),
    )
    for name, columns in [
        ("bgp_job_created", ["created"]), ("bgp_job_modified", ["modified"]),
        ("bgp_job_state_created", ["state", "created"]),
        ("bgp_job_queue_state", ["queue", "state", "created"]),
        ("bgp_job_priority", ["priority", "created"]), ("bgp_job_name", ["name", "created"]),
        ("bgp_job_env_state", ["environment", "state", "modified"]),
        ("bgp_job_lock_expires", ["state", "lock_expires"]),
    ]:
        op.create_index(name, "celery_bgp_job", columns)
    if not d.mysql:  # MySQL indexes a foreign key itself, under the constraint's name
        for column in ("child_id", "parent_id"):
            op.create_index(FOREIGN_KEYS["celery_bgp_continuation", column],
                            "celery_bgp_continuation", [column])
    op.create_index("bgp_joblog_job", "celery_bgp_joblog", ["job_id", "id"])
    for kind in ("text", "int", "float", "bool", "date"):
        op.create_index(f"bgp_jobprop_{kind}", "celery_bgp_jobproperty",
                        ["name", f"value_{kind}", "job_id"], **d.partial(f"value_{kind}"))
    op.create_index("bgp_jobprop_text_any", "celery_bgp_jobproperty",
                    ["value_text", "job_id"], **d.partial("value_text"))
    op.create_index("bgp_jobstate_name_job", "celery_bgp_jobstate", ["name", "job_id"])


def downgrade() -> None:
    for table in TABLES:
        op.drop_table(table)
