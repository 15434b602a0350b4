"""The job list's search box: exact and prefix lookups that walk an index, never ``%x%``.

``A-10`` finds jobs whose id or name starts with it, and jobs with any text
property whose value starts with it; ``tenant=acme`` (or ``tenant=ac*``) finds
jobs whose ``tenant`` property is (or starts with) that text. A prefix is a range
on the column (``>= 'A-10' AND < 'A-10\\U0010ffff'``), which a B-tree serves under
any collation, plus the exact ``LIKE 'A-10%'`` check on the rows found. Property
matches are looked up first (at most :data:`MAX_PROPERTY_MATCHES` jobs), so the
job query is an OR of index scans the planner can combine.
"""
from __future__ import annotations

from django.db.models import Q

from .models import JobProperty

__all__ = ["MAX_PROPERTY_MATCHES", "prefix", "search_filter"]

#: A property search considers at most this many matching jobs.
MAX_PROPERTY_MATCHES = 1000
_TOP = "\U0010ffff"


def prefix(column: str, text: str) -> Q:
    """``column`` starts with ``text``, as an index range plus the exact check."""
    return Q(**{f"{column}__gte": text, f"{column}__lt": text + _TOP,
                f"{column}__startswith": text})


def _property_jobs(condition: Q) -> list[str]:
    rows = JobProperty.objects.filter(condition).values_list("job_id", flat=True)
    return list(rows[:MAX_PROPERTY_MATCHES])


def search_filter(term: str) -> Q:
    """The condition on jobs for one search term (see the module's doc)."""
    name, equals, value = term.partition("=")
    if equals and name.strip():
        name, value = name.strip(), value.strip()
        if value.endswith("*"):
            condition = Q(name=name) & prefix("value_text", value[:-1])
        else:
            condition = Q(name=name, value_text=value)
        return Q(pk__in=_property_jobs(condition))
    found = prefix("id", term) | prefix("name", term)
    by_value = _property_jobs(prefix("value_text", term))
    return found | Q(pk__in=by_value) if by_value else found
