"""The job list's search box: exact and prefix lookups that walk an index, never ``%x%``.

``tenant=acme`` (or ``tenant=ac*``) finds jobs whose ``tenant`` property is (or
starts with) that text, every match: a semi-join on the ``(name, value_text, job)``
index.

A bare term (``A-10``) finds jobs whose id starts with it, whose name contains it
(any case: ``report`` finds ``shop.jobs:generate_report``), and jobs with any text
property whose value starts with it. A name is matched against the few distinct job
names (one loose index scan on PostgreSQL, :func:`.distinct_values`), and the jobs
are then found with ``name IN (...)`` on the ``(name, created)`` index: never a
``LIKE '%x%'`` over a million rows. A prefix is a range on the column
(``>= 'A-10' AND < 'A-10\\U0010ffff'``), which a B-tree serves under any collation,
plus the exact ``LIKE 'A-10%'`` check on the rows found. For a bare term the property
matches are looked up first (at most :data:`MAX_PROPERTY_MATCHES` jobs, the list
says when there were more), so the job query is an OR of index scans the planner
can combine instead of a scan of every job. A narrow search (few matches, counted
with a stopping count) is sorted by an expression, so the matches are fetched and
sorted rather than found by walking the newest jobs (:func:`sort_matches`).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from django.db.models import Q, QuerySet
from django.db.models.functions import Coalesce

from .models import Job, JobProperty

__all__ = ["MAX_PROPERTY_MATCHES", "Search", "names_containing", "prefix", "search_filter",
           "sort_matches"]

#: A bare term considers at most this many jobs found by a property value.
MAX_PROPERTY_MATCHES = 5000
#: Up to this many matches a search is "narrow": its matches are fetched and sorted.
NARROW = 10_000
#: Names a substring is matched against: at most this many distinct job names.
MAX_NAMES = 2000
_TOP = "\U0010ffff"


@dataclasses.dataclass(frozen=True)
class Search:
    """The condition on jobs; whether property matches were cut at the limit; whether
    there are few matches (then the list sorts the matches instead of walking the
    newest jobs until a page of them turns up, see :func:`sort_matches`)."""

    condition: Q
    capped: bool = False
    narrow: bool = False


def prefix(column: str, text: str) -> Q:
    """``column`` starts with ``text``, as an index range plus the exact check."""
    return Q(**{f"{column}__gte": text, f"{column}__lt": text + _TOP,
                f"{column}__startswith": text})


def _at_most(rows: QuerySet[Any], limit: int) -> bool:
    """Whether ``rows`` has at most ``limit`` rows (a count that stops early)."""
    return rows[:limit + 1].count() <= limit


def search_filter(term: str) -> Search:
    """The search for one term (see the module's doc)."""
    name, equals, value = term.partition("=")
    if equals and name.strip():
        name, value = name.strip(), value.strip()
        if value.endswith("*"):
            condition = Q(name=name) & prefix("value_text", value[:-1])
        else:
            condition = Q(name=name, value_text=value)
        matches = JobProperty.objects.filter(condition)
        return Search(Q(pk__in=matches.values("job_id")),
                      narrow=_at_most(matches, NARROW))
    found = prefix("id", term) | prefix("name", term)
    names = names_containing(term)
    if names:
        found |= Q(name__in=names)
    rows = JobProperty.objects.filter(prefix("value_text", term)).values_list("job_id",
                                                                               flat=True)
    by_value = list(rows[:MAX_PROPERTY_MATCHES + 1])
    capped = len(by_value) > MAX_PROPERTY_MATCHES
    # At most MAX_PROPERTY_MATCHES ids from properties, so narrow when id and name
    # prefixes match few jobs too.
    narrow = _at_most(Job.objects.filter(found), NARROW - len(by_value))
    if by_value:
        found |= Q(pk__in=by_value[:MAX_PROPERTY_MATCHES])
    return Search(found, capped=capped, narrow=narrow)


def names_containing(term: str) -> list[str]:
    """The distinct job names that contain ``term`` (any case), from the names index."""
    from .admin_filters import distinct_values

    wanted = term.casefold()
    return [name for name in distinct_values("name", limit=MAX_NAMES)
            if wanted in name.casefold()]


def sort_matches(ordering: Iterable[Any]) -> list[Any]:
    """``ordering`` with ``created`` as an expression no index serves.

    Ordered by an indexed column, PostgreSQL may walk that index from the newest job
    and test each row against the search until it has a page, which for a few old
    matches means most of the table. Ordered by an expression, it fetches the few
    matches through their indexes and sorts them.
    """
    found = []
    for item in ordering:
        if item in ("created", "-created"):
            expression = Coalesce("created", "modified")
            item = expression.desc() if item.startswith("-") else expression.asc()
        found.append(item)
    return found
