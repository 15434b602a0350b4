"""The job list's paginator: PostgreSQL's row estimate instead of ``COUNT(*)`` when unfiltered.

Counting a million jobs reads a million index entries on every page load; the
planner's estimate (``pg_class.reltuples``, kept fresh by autovacuum) is free and
good to a few percent, which is all "page 1 of about 10,000" needs. A filtered list
is counted exactly (the filters' indexes keep that bounded), and so is every list on
SQLite and MySQL, or below the threshold, where counting is cheap. A search can match
most of the table through a join (``tenant=a*``), so its count stops at
:data:`SEARCH_COUNT_LIMIT`: "more than 10,000", and paging ends there.
"""
from __future__ import annotations

from functools import cached_property
from typing import Any

from django.core.paginator import Paginator
from django.db import connections

__all__ = ["SEARCH_COUNT_LIMIT", "EstimatedCountPaginator", "table_estimate"]

#: Above this many rows (estimated) an unfiltered list shows the estimate.
ESTIMATE_THRESHOLD = 10_000
#: A search's count stops here.
SEARCH_COUNT_LIMIT = 10_000
#: The "count" of a live refresh's list (not counted: see ``uncounted``).
UNCOUNTED = 2**62


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
    #: True when a search's count stopped at ``count_limit`` (the list says "more than").
    capped = False

    def __init__(self, *args: Any, count_limit: int | None = None, uncounted: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.count_limit = count_limit
        self.uncounted = uncounted

    @cached_property
    def count(self) -> int:
        if self.uncounted:
            # A live refresh re-renders the rows only; the page keeps the pagination it
            # showed, so it need not count (any page number is accepted).
            return UNCOUNTED
        if self.count_limit is not None:
            # Only the ids (no per-row subqueries, no order) up to one past the limit.
            ids = self.object_list.order_by().values("pk")
            found = ids[:self.count_limit + 1].count()
            self.capped = found > self.count_limit
            return min(found, self.count_limit)
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
