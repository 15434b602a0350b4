"""Translate the validated job query language into SQLAlchemy expressions (never SQL text).

The Django store's translation (``contrib/django/queries.py``), in SQLAlchemy Core:
field conditions are column comparisons; ``past_state`` and property conditions are
``EXISTS`` subqueries, and and-ed conditions on one property share one subquery. The
typed semantics of property values (which value columns a condition reads, the exact
integer bounds of a float) are :func:`celery_bgp.jobs.relational.property_sides`.
``*`` patterns are ``GLOB`` on SQLite and ``LIKE`` (``\\`` escapes) elsewhere.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, false, or_, select

from celery_bgp.jobs.query import Condition, Group, JobQuery, Node, QueryError
from celery_bgp.jobs.relational import like_escape, property_sides

from .schema import job, job_property, job_state

__all__ = ["order_by", "where"]

#: Query language field -> job column.
COLUMNS = {"locked_by": "lock_holder"}


def where(query: JobQuery, dialect: str) -> list[ColumnElement[bool]]:
    """The conditions of ``query`` (environment and where), to AND."""
    found: list[ColumnElement[bool]] = []
    if query.environment is not None:
        found.append(job.c.environment == query.environment)
    if query.where is not None:
        found.append(_node(query.where, dialect))
    return found


def order_by(query: JobQuery) -> list[Any]:
    return [job.c[key[1:]].desc() if key.startswith("-") else job.c[key].asc()
            for key in query.order_by]


def _node(node: Node, dialect: str) -> ColumnElement[bool]:
    if isinstance(node, Group):
        if node.kind == "and":
            return _and(node.children, dialect)
        return or_(*(_node(child, dialect) for child in node.children))
    if not isinstance(node, Condition):
        raise QueryError(f"not a query node: {type(node).__name__}")
    if node.prop is not None:
        return _property_exists(node.prop, [node], dialect)
    if node.field == "past_state":
        return exists().where(job_state.c.job_id == job.c.id,
                              _compare(job_state.c.name, node.op, node.value, dialect))
    return _compare(job.c[COLUMNS.get(node.field, node.field)], node.op, node.value, dialect)


def _and(children: Iterable[Node], dialect: str) -> ColumnElement[bool]:
    parts: list[ColumnElement[bool]] = []
    by_property: dict[str, list[Condition]] = {}
    for child in _flatten_and(children):
        if isinstance(child, Condition) and child.prop is not None:
            by_property.setdefault(child.prop, []).append(child)
        else:
            parts.append(_node(child, dialect))
    parts += [_property_exists(name, conds, dialect) for name, conds in by_property.items()]
    return and_(*parts)


def _flatten_and(children: Iterable[Node]) -> Iterator[Node]:
    for child in children:
        if isinstance(child, Group) and child.kind == "and":
            yield from _flatten_and(child.children)
        else:
            yield child


def _property_exists(name: str, conditions: list[Condition],
                     dialect: str) -> ColumnElement[bool]:
    sides = property_sides(conditions)
    if not sides:
        return false()
    value = or_(*(and_(*(_compare(job_property.c[column], op, item, dialect)
                         for op, item in conds))
                  for column, conds in sides.items()))
    return exists(select(job_property.c.id).where(
        job_property.c.job_id == job.c.id, job_property.c.name == name, value))


def _compare(column: Any, op: str, value: Any, dialect: str) -> ColumnElement[bool]:
    if op == "eq":
        return column == value
    if op == "lt":
        return column < value
    if op == "gt":
        return column > value
    if op == "lte":
        return column <= value
    if op == "gte":
        return column >= value
    if op == "in":
        return column.in_(list(value))
    if op == "notnull":
        return column.is_not(None)
    if op == "like":
        if not isinstance(value, str):
            raise QueryError("like needs a text pattern")
        pattern = like_escape(value, dialect)
        if dialect == "sqlite":
            return column.op("GLOB", is_comparison=True)(pattern)
        if dialect == "postgresql":
            return column.like(pattern, escape="\\")
        return column.like(pattern)  # MySQL/MariaDB: backslash is LIKE's default escape
    raise QueryError(f"unknown operator {op!r}")
