"""The job list's filters: choices that cost nothing or one index walk, never ``DISTINCT``.

Django's default filter for a text column lists its values with ``SELECT DISTINCT``,
which reads the whole table (or index) at a million rows. State and priority
choices are known in advance. Queue, name and environment values come from a
"loose index scan" on PostgreSQL (a recursive query that jumps from one value to
the next in the index, one probe per distinct value); elsewhere from ``DISTINCT``,
capped. A live refresh of the list reads no choices at all.
"""
from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import connections
from django.db.models import QuerySet

from celery_bgp.jobs.states import BUILTIN_STATES
from celery_bgp.priority import Priority

from .models import Job

__all__ = ["EnvironmentFilter", "NameFilter", "PriorityFilter", "QueueFilter", "StateFilter",
           "distinct_values"]

#: At most this many values are offered by a value filter.
MAX_CHOICES = 200


def distinct_values(column: str, using: str = "default", limit: int = MAX_CHOICES) -> list[str]:
    """Distinct values of a job column that leads an index, in order, at most ``limit``."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        values = (Job.objects.using(using).order_by(column)
                  .values_list(column, flat=True).distinct())
        return list(values[:limit])
    field = Job._meta.get_field(column)
    table = connection.ops.quote_name(Job._meta.db_table)
    col = connection.ops.quote_name(field.column)
    sql = (f"WITH RECURSIVE v(x) AS ("
           f" (SELECT {col} FROM {table} ORDER BY {col} LIMIT 1)"
           f" UNION ALL SELECT (SELECT {col} FROM {table} WHERE {col} > v.x"
           f" ORDER BY {col} LIMIT 1) FROM v WHERE v.x IS NOT NULL)"
           f" SELECT x FROM v WHERE x IS NOT NULL LIMIT %s")
    with connection.cursor() as cursor:
        cursor.execute(sql, [limit])
        return [row[0] for row in cursor.fetchall()]


def state_names() -> list[str]:
    """The states of the project's job engine (custom ones too), else the built-in ones."""
    from .admin_support import find_bgp

    bgp = find_bgp()
    if bgp is not None and bgp.has_jobs:
        return list(bgp.jobs.states.names)
    return [state.name for state in BUILTIN_STATES]


class _ValueFilter(admin.SimpleListFilter):
    """Exact match on one column; subclasses say which and where the choices come from."""

    column = ""

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        if getattr(request, "bgp_live", None):
            # A live refresh filters but shows no sidebar: no query for the choices
            # (one choice, so that Django keeps the filter).
            return [(self.value() or "", self.value() or "")]
        return [(value, value) for value in distinct_values(self.column)]

    def queryset(self, request: Any, queryset: QuerySet[Job]) -> QuerySet[Job]:
        value = self.value()
        if value is None:
            return queryset
        return queryset.filter(**{self.column: value})


class StateFilter(_ValueFilter):
    title = "state"
    parameter_name = "state"
    column = "state"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in state_names()]


class QueueFilter(_ValueFilter):
    title = "queue"
    parameter_name = "queue"
    column = "queue"


class NameFilter(_ValueFilter):
    title = "name"
    parameter_name = "name"
    column = "name"


class EnvironmentFilter(_ValueFilter):
    title = "environment"
    parameter_name = "environment"
    column = "environment"


class PriorityFilter(admin.SimpleListFilter):
    title = "priority"
    parameter_name = "priority"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(int(level)), level.name) for level in Priority]

    def queryset(self, request: Any, queryset: QuerySet[Job]) -> QuerySet[Job]:
        value = self.value()
        if value is None:
            return queryset
        try:
            return queryset.filter(priority=int(value))
        except ValueError:
            return queryset.none()
