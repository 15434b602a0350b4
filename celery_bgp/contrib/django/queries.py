"""Translate the validated job query language into Django ORM filters (never SQL text).

Field conditions become column lookups; ``past_state`` and property conditions
become ``EXISTS`` subqueries, so a job matches once however many states or
properties qualify and the planner can drive the search from either side. A job
has one value per property, so and-ed conditions on the same property share one
subquery: ``P("n") >= 10 & P("n") < 20`` is one index range, not two half-open scans.

Property conditions keep the in-memory store's typed semantics: a property holds a
bool, an int, a float, a text or a datetime, each in its own column; ints and
floats compare as numbers (``P("n") == 20.0`` finds ``n=20``), text never equals a
number, and a bool is not a number. The per-column conditions come from
:func:`celery_bgp.jobs.relational.property_sides`, shared with the SQLAlchemy store.
Numbers beyond 2**53 compare as doubles across the two columns.
"""
from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator
from functools import reduce
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet

from celery_bgp.jobs.query import Condition, Group, JobQuery, Node, QueryError
from celery_bgp.jobs.relational import VALUE_COLUMNS, property_columns, property_sides

from .models import Job, JobProperty, JobState

__all__ = ["VALUE_COLUMNS", "filtered", "job_filter", "property_columns", "property_filter"]

#: Query language operator -> Django lookup.
LOOKUPS = {"eq": "exact", "lt": "lt", "gt": "gt", "lte": "lte", "gte": "gte",
           "like": "bgp_like", "in": "in"}
#: Query language field -> Job column.
COLUMNS = {"locked_by": "lock_holder"}
_NONE = Q(pk__in=[])  # matches nothing (Django drops it from OR, empties an AND)


def filtered(query: JobQuery, using: str) -> QuerySet[Job]:
    """Jobs matching ``query``'s environment and conditions (no order, no paging)."""
    jobs = Job.objects.using(using).all()
    if query.environment is not None:
        jobs = jobs.filter(environment=query.environment)
    if query.where is not None:
        jobs = jobs.filter(job_filter(query.where))
    return jobs


def job_filter(node: Node) -> Q:
    """A Django ``Q`` for a query node, evaluated against :class:`Job` rows."""
    if isinstance(node, Group):
        if node.kind == "and":
            return _and(node.children)
        return reduce(operator.or_, (job_filter(child) for child in node.children))
    if not isinstance(node, Condition):
        raise QueryError(f"not a query node: {type(node).__name__}")
    if node.prop is not None:
        return _property_exists(node.prop, [node])
    if node.field == "past_state":
        states = JobState.objects.filter(job=OuterRef("pk"))
        return Q(Exists(states.filter(_lookup("name", node.op, node.value))))
    return _lookup(COLUMNS.get(node.field, node.field), node.op, node.value)


def _and(children: Iterable[Node]) -> Q:
    """And-ed nodes; conditions on one property become one subquery."""
    parts: list[Q] = []
    by_property: dict[str, list[Condition]] = {}
    for child in _flatten_and(children):
        if isinstance(child, Condition) and child.prop is not None:
            by_property.setdefault(child.prop, []).append(child)
        else:
            parts.append(job_filter(child))
    parts += [_property_exists(name, conds) for name, conds in by_property.items()]
    return reduce(operator.and_, parts)


def _flatten_and(children: Iterable[Node]) -> Iterator[Node]:
    for child in children:
        if isinstance(child, Group) and child.kind == "and":
            yield from _flatten_and(child.children)
        else:
            yield child


def _property_exists(name: str, conditions: list[Condition]) -> Q:
    props = JobProperty.objects.filter(job=OuterRef("pk"), name=name)
    return Q(Exists(props.filter(_property_and(conditions))))


def _lookup(column: str, op: str, value: Any) -> Q:
    if op == "in":
        value = list(value)
    return Q(**{f"{column}__{LOOKUPS[op]}": value})


# -- typed property values (the rules: celery_bgp.jobs.relational) --------------------


def property_filter(op: str, value: Any) -> Q:
    """Conditions on :class:`JobProperty` value columns for ``value <op> value``."""
    return _property_and([Condition("", op, value, prop="_")])


def _property_and(conditions: list[Condition]) -> Q:
    """All ``conditions`` on one property value: per typed column, or-ed over columns."""
    sides = property_sides(conditions)
    if not sides:
        return _NONE
    return reduce(operator.or_, (
        reduce(operator.and_, (_side(column, op, value) for op, value in conds))
        for column, conds in sides.items()))


def _side(column: str, op: str, value: Any) -> Q:
    if op == "notnull":
        return Q(**{f"{column}__isnull": False})
    return _lookup(column, op, value)
