"""Translate the validated job query language into Django ORM filters (never SQL text).

Field conditions become column lookups; ``past_state`` and property conditions
become ``EXISTS`` subqueries, so a job matches once however many states or
properties qualify and the planner can drive the search from either side. A job
has one value per property, so and-ed conditions on the same property share one
subquery: ``P("n") >= 10 & P("n") < 20`` is one index range, not two half-open scans.

Property conditions keep the in-memory store's typed semantics: a property holds a
bool, an int, a float, a text or a datetime, each in its own column; ints and
floats compare as numbers (``P("n") == 20.0`` finds ``n=20``), text never equals a
number, and a bool is not a number. A float compared with the int column is turned
into the equivalent integer bound (``x < 15.5`` is ``x < 16``), so both sides of a
numeric comparison stay exact and indexable. Numbers beyond 2**53 compare as
doubles across the two columns.
"""
from __future__ import annotations

import math
import operator
import sys
from collections.abc import Iterable, Iterator
from datetime import datetime
from functools import reduce
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet

from celery_bgp.jobs.query import Condition, Group, JobQuery, Node, QueryError

from .models import Job, JobProperty, JobState

__all__ = ["filtered", "job_filter", "property_columns", "property_filter"]

#: Query language operator -> Django lookup.
LOOKUPS = {"eq": "exact", "lt": "lt", "gt": "gt", "lte": "lte", "gte": "gte",
           "like": "bgp_like", "in": "in"}
#: Query language field -> Job column.
COLUMNS = {"locked_by": "lock_holder"}
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
FLOAT_MAX = sys.float_info.max
VALUE_COLUMNS = ("value_text", "value_int", "value_float", "value_bool", "value_date")
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


# -- typed property values ------------------------------------------------------------


def property_columns(value: Any) -> dict[str, Any]:
    """The ``value_*`` columns that store ``value`` (all five, unused ones None)."""
    columns: dict[str, Any] = dict.fromkeys(VALUE_COLUMNS)
    if isinstance(value, bool):
        columns["value_bool"] = value
    elif isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise QueryError(f"int property {value} does not fit in 64 bits")
        columns["value_int"] = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise QueryError("a float property must be finite")
        columns["value_float"] = value
    elif isinstance(value, str):
        columns["value_text"] = value
    elif isinstance(value, datetime):
        columns["value_date"] = value
    else:  # property_value() ran first; this is a programming error
        raise QueryError(f"not a property type: {type(value).__name__}")
    return columns


def property_filter(op: str, value: Any) -> Q:
    """Conditions on :class:`JobProperty` value columns for ``value <op> value``."""
    return _property_and([Condition("", op, value, prop="_")])


def _property_and(conditions: list[Condition]) -> Q:
    """All ``conditions`` on one property value: per typed column, or-ed over columns.

    A property fills exactly one value column, so ``(int a | float a) & (int b |
    float b)`` equals ``(int a & int b) | (float a & float b)``, which indexes serve.
    """
    sides: dict[str, Q] | None = None
    for condition in conditions:
        found = _sides(condition.op, condition.value)
        sides = found if sides is None else {
            column: sides[column] & found[column] for column in sides if column in found}
    if not sides:
        return _NONE
    return reduce(operator.or_, sides.values())


def _sides(op: str, value: Any) -> dict[str, Q]:
    """Column -> condition on that column, for the columns that can match."""
    if op == "in":
        return _sides_in(value)
    if isinstance(value, bool):
        return {"value_bool": _lookup("value_bool", op, value)}
    if isinstance(value, (int, float)):
        sides = {"value_int": _int_side(op, value), "value_float": _float_side(op, value)}
        return {column: q for column, q in sides.items() if q is not None}
    if isinstance(value, str):
        return {"value_text": _lookup("value_text", op, value)}
    return {"value_date": _lookup("value_date", op, value)}


def _sides_in(values: Iterable[Any]) -> dict[str, Q]:
    by_column: dict[str, list[Any]] = {column: [] for column in VALUE_COLUMNS}
    for value in values:
        if isinstance(value, bool):
            by_column["value_bool"].append(value)
        elif isinstance(value, (int, float)):
            as_int = _exact_int(value)
            if as_int is not None:
                by_column["value_int"].append(as_int)
            if abs(value) <= FLOAT_MAX:
                by_column["value_float"].append(float(value))
        elif isinstance(value, str):
            by_column["value_text"].append(value)
        else:
            by_column["value_date"].append(value)
    return {column: Q(**{f"{column}__in": items}) for column, items in by_column.items()
            if items}


def _exact_int(value: int | float) -> int | None:
    """``value`` as a storable int if it equals one, else None."""
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return None
        value = int(value)
    return value if INT_MIN <= value <= INT_MAX else None


def _bounded(column: str, op: str, value: int | float, low: float, high: float) -> Q | None:
    """``column <op> value`` for a column whose values all lie in [low, high]; None if
    no value can match."""
    if value < low or value > high:
        below = value < low  # every stored value is above ``value``
        if (op in ("gt", "gte") and below) or (op in ("lt", "lte") and not below):
            return Q(**{f"{column}__isnull": False})
        return None
    return _lookup(column, op, value)


def _int_side(op: str, value: int | float) -> Q | None:
    if isinstance(value, float) and math.isfinite(value) and not value.is_integer():
        if op == "eq":
            return None
        # For an int x: x < 15.5 <=> x < 16, x <= 15.5 <=> x <= 15, and so on.
        value = math.ceil(value) if op in ("lt", "gte") else math.floor(value)
    elif isinstance(value, float) and math.isfinite(value):
        value = int(value)
    return _bounded("value_int", op, value, INT_MIN, INT_MAX)


def _float_side(op: str, value: int | float) -> Q | None:
    if isinstance(value, int) and abs(value) <= FLOAT_MAX:
        value = float(value)
    return _bounded("value_float", op, value, -FLOAT_MAX, FLOAT_MAX)
