"""The job list's paginator: PostgreSQL's row estimate instead of ``COUNT(*)`` when unfiltered.

Counting a million jobs reads a million index entries on every page load; the
planner's estimate (``pg_class.reltuples``, kept fresh by autovacuum) is free and
good to a few percent, which is all "page 1 of about 10,000" needs. A filtered or
searched list is counted exactly (the filters' indexes keep that bounded), and so
is every list on SQLite and MySQL, or below the threshold, where counting is cheap.
"""
from __future__ import annotations

from functools import cached_property

from django.core.paginator import Paginator
from django.db import connections

__all__ = ["EstimatedCountPaginator", "table_estimate"]

#: Above this many rows (estimated) an unfiltered list shows the estimate.
ESTIMATE_THRESHOLD = 10_000


def table_estimate(table: str, using: str = "default") -> int | None:
    """The planner's row estimate of ``table`` (PostgreSQL), or None when unknown."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
                       [connection.ops.quote_name(table)])
        row = cursor.fetchone()
    if row is None or row[0] is None or row[0] < 0:  # -1: never vacuumed or analyzed
        return None
    return int(row[0])


class EstimatedCountPaginator(Paginator):
    """A paginator whose ``count`` is PostgreSQL's estimate for an unfiltered job list."""

    threshold = ESTIMATE_THRESHOLD

    #: True when :attr:`count` is an estimate (the list says "about").
    estimated = False

    @cached_property
    def count(self) -> int:
        estimate = self._estimate()
        if estimate is not None and estimate > self.threshold:
            self.estimated = True
            return estimate
        return super().count

    def _estimate(self) -> int | None:
        query = getattr(self.object_list, "query", None)
        if query is None or query.where or query.distinct or query.combinator:
            return None  # filtered (or not a queryset): count exactly
        return table_estimate(query.model._meta.db_table, self.object_list.db)
