"""The job list's search box: exact and prefix lookups that walk an index, never ``%x%``.

``tenant=acme`` (or ``tenant=ac*``) finds jobs whose ``tenant`` property is (or
starts with) that text: a semi-join on the ``(name, value_text, job)`` index, every
match. A bare term (``A-10``) finds jobs whose id or name starts with it, and jobs
with any text property whose value starts with it. A prefix is a range on the column
(``>= 'A-10' AND < 'A-10\\U0010ffff'``), which a B-tree serves under any collation,
plus the exact ``LIKE 'A-10%'`` check on the rows found. For a bare term the property
matches are looked up first (at most :data:`MAX_PROPERTY_MATCHES` jobs, the list
says when there were more), so the job query is an OR of index scans the planner
can combine instead of a scan of every job.
"""
from __future__ import annotations

import dataclasses

from django.db.models import Q

from .models import JobProperty

__all__ = ["MAX_PROPERTY_MATCHES", "Search", "prefix", "search_filter"]

#: A bare term considers at most this many jobs found by a property value.
MAX_PROPERTY_MATCHES = 1000
_TOP = "\U0010ffff"


@dataclasses.dataclass(frozen=True)
class Search:
    """The condition on jobs, and whether property matches were cut at the limit."""

    condition: Q
    capped: bool = False


def prefix(column: str, text: str) -> Q:
    """``column`` starts with ``text``, as an index range plus the exact check."""
    return Q(**{f"{column}__gte": text, f"{column}__lt": text + _TOP,
                f"{column}__startswith": text})


def search_filter(term: str) -> Search:
    """The search for one term (see the module's doc)."""
    name, equals, value = term.partition("=")
    if equals and name.strip():
        name, value = name.strip(), value.strip()
        if value.endswith("*"):
            condition = Q(name=name) & prefix("value_text", value[:-1])
        else:
            condition = Q(name=name, value_text=value)
        return Search(Q(pk__in=JobProperty.objects.filter(condition).values("job_id")))
    found = prefix("id", term) | prefix("name", term)
    rows = JobProperty.objects.filter(prefix("value_text", term)).values_list("job_id",
                                                                               flat=True)
    by_value = list(rows[:MAX_PROPERTY_MATCHES + 1])
    if not by_value:
        return Search(found)
    return Search(found | Q(pk__in=by_value[:MAX_PROPERTY_MATCHES]),
                  capped=len(by_value) > MAX_PROPERTY_MATCHES)
