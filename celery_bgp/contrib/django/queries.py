"""Translate the validated job query language into Django ORM filters (never SQL text).

Field conditions become column lookups; ``past_state`` and property conditions
become ``EXISTS`` subqueries, so a job matches once however many states or
properties qualify and the planner can drive the search from either side.

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
from collections.abc import Iterable
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
        combine = operator.and_ if node.kind == "and" else operator.or_
        return reduce(combine, (job_filter(child) for child in node.children))
    if not isinstance(node, Condition):
        raise QueryError(f"not a query node: {type(node).__name__}")
    if node.prop is not None:
        props = JobProperty.objects.filter(job=OuterRef("pk"), name=node.prop)
        return Q(Exists(props.filter(property_filter(node.op, node.value))))
    if node.field == "past_state":
        states = JobState.objects.filter(job=OuterRef("pk"))
        return Q(Exists(states.filter(_lookup("name", node.op, node.value))))
    return _lookup(COLUMNS.get(node.field, node.field), node.op, node.value)


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
    if op == "in":
        return _property_in(value)
    if isinstance(value, bool):
        return _lookup("value_bool", op, value)
    if isinstance(value, (int, float)):
        return _int_side(op, value) | _float_side(op, value)
    if isinstance(value, str):
        return _lookup("value_text", op, value)
    return _lookup("value_date", op, value)


def _property_in(values: Iterable[Any]) -> Q:
    texts, ints, floats, bools, dates = [], [], [], [], []
    for value in values:
        if isinstance(value, bool):
            bools.append(value)
        elif isinstance(value, (int, float)):
            as_int = _exact_int(value)
            if as_int is not None:
                ints.append(as_int)
            if abs(value) <= FLOAT_MAX:
                floats.append(float(value))
        elif isinstance(value, str):
            texts.append(value)
        else:
            dates.append(value)
    parts = [Q(**{f"{column}__in": items}) for column, items in (
        ("value_text", texts), ("value_int", ints), ("value_float", floats),
        ("value_bool", bools), ("value_date", dates)) if items]
    return reduce(operator.or_, parts) if parts else _NONE


def _exact_int(value: int | float) -> int | None:
    """``value`` as a storable int if it equals one, else None."""
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return None
        value = int(value)
    return value if INT_MIN <= value <= INT_MAX else None


def _bounded(column: str, op: str, value: int | float, low: float, high: float) -> Q:
    """``column <op> value`` for a column whose values all lie in [low, high]."""
    if value < low or value > high:
        below = value < low  # every stored value is above ``value``
        if op in ("gt", "gte"):
            return Q(**{f"{column}__isnull": False}) if below else _NONE
        if op in ("lt", "lte"):
            return _NONE if below else Q(**{f"{column}__isnull": False})
        return _NONE
    return _lookup(column, op, value)


def _int_side(op: str, value: int | float) -> Q:
    if isinstance(value, float) and math.isfinite(value) and not value.is_integer():
        if op == "eq":
            return _NONE
        # For an int x: x < 15.5 <=> x < 16, x <= 15.5 <=> x <= 15, and so on.
        value = math.ceil(value) if op in ("lt", "gte") else math.floor(value)
    elif isinstance(value, float) and math.isfinite(value):
        value = int(value)
    return _bounded("value_int", op, value, INT_MIN, INT_MAX)


def _float_side(op: str, value: int | float) -> Q:
    if isinstance(value, int) and abs(value) <= FLOAT_MAX:
        value = float(value)
    return _bounded("value_float", op, value, -FLOAT_MAX, FLOAT_MAX)
