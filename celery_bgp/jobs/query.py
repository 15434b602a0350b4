"""The job query language: conditions on fields and typed properties, and/or, order.

Queries are data, validated when built: a field name, an operator or a value type
that is not on the allow-lists below raises :class:`QueryError`, so nothing a user
(or a URL) types reaches a store unchecked and no store ever builds SQL from text.

    Q(state="Failed", queue__in=["mail", "sms"]) & (P("tenant") == "acme")
    Q(created__gte=yesterday) | Q(past_state="Retrying")
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from ..exceptions import BGPError

__all__ = [
    "FIELDS",
    "OPERATORS",
    "ORDER_FIELDS",
    "Condition",
    "Group",
    "JobQuery",
    "P",
    "Q",
    "QueryError",
    "like_to_regex",
    "property_value",
]


class QueryError(BGPError, ValueError):
    """A query names an unknown field/operator or compares with the wrong type."""


#: Field -> the Python type of its values.
FIELDS: dict[str, type] = {
    "id": str,
    "name": str,
    "kind": str,
    "queue": str,
    "environment": str,
    "state": str,
    "past_state": str,
    "locked_by": str,
    "worker": str,
    "priority": int,
    "created": datetime,
    "modified": datetime,
}
OPERATORS = ("eq", "lt", "gt", "lte", "gte", "like", "in")
ORDER_FIELDS = ("id", "name", "queue", "priority", "state", "created", "modified")
MAX_IN = 1000
MAX_LIMIT = 10_000
MAX_TEXT = 255
#: Python types a property may hold, in storage order.
PROPERTY_TYPES = (bool, int, float, str, datetime)


def property_value(name: str, value: Any) -> Any:
    """Validate a property name and value (text <= 255 chars, aware datetimes)."""
    if not isinstance(name, str) or not name or len(name) > MAX_TEXT:
        raise QueryError(f"a property name is 1-{MAX_TEXT} characters of text")
    if isinstance(value, (bool, int, float)):
        if isinstance(value, float) and value != value:
            raise QueryError(f"property {name!r}: NaN cannot be stored or compared")
        return value
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise QueryError(f"property {name!r}: text is limited to {MAX_TEXT} characters")
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise QueryError(f"property {name!r}: datetimes must be timezone-aware")
        return value
    raise QueryError(
        f"property {name!r}: {type(value).__name__} is not a property type "
        "(text, int, float, bool, datetime)"
    )


class Node:
    """A condition tree; combine with ``&`` and ``|``."""

    def __and__(self, other: Node) -> Group:
        return Group("and", (self, _node(other)))

    def __or__(self, other: Node) -> Group:
        return Group("or", (self, _node(other)))


def _node(value: Any) -> Node:
    if not isinstance(value, Node):
        raise QueryError(f"cannot combine a query with {type(value).__name__}")
    return value


@dataclasses.dataclass(frozen=True)
class Condition(Node):
    """``field op value``; ``prop`` set means a property condition (``field`` unused)."""

    field: str
    op: str
    value: Any
    prop: str | None = None

    def __post_init__(self) -> None:
        if self.op not in OPERATORS:
            raise QueryError(f"unknown operator {self.op!r}; use one of {', '.join(OPERATORS)}")
        if self.prop is None:
            if self.field not in FIELDS:
                raise QueryError(
                    f"unknown job field {self.field!r}; use one of {', '.join(FIELDS)}"
                )
            _check_value(self.field, FIELDS[self.field], self.op, self.value)
        else:
            property_value(self.prop, "x")  # checks the name
            values = self.value if self.op == "in" else [self.value]
            if self.op == "in":
                _check_in(self.prop, self.value)
            for value in values:
                property_value(self.prop, value)
            if self.op == "like" and not isinstance(self.value, str):
                raise QueryError(f"property {self.prop!r}: like needs a text pattern")


def _check_in(name: str, value: Any) -> None:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
        raise QueryError(f"{name}: 'in' needs a list of values")
    if not value or len(value) > MAX_IN:
        raise QueryError(f"{name}: 'in' takes 1 to {MAX_IN} values")


def _check_value(field: str, kind: type, op: str, value: Any) -> None:
    if op == "in":
        _check_in(field, value)
        for item in value:
            _check_value(field, kind, "eq", item)
        return
    if op == "like" and kind is not str:
        raise QueryError(f"{field}: like works on text fields only")
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is datetime:
        ok = isinstance(value, datetime) and value.tzinfo is not None
    else:
        ok = isinstance(value, str) and len(value) <= MAX_TEXT
    if not ok:
        expected = {int: "an int", datetime: "a timezone-aware datetime"}.get(
            kind, f"text of at most {MAX_TEXT} characters"
        )
        raise QueryError(f"{field}: expected {expected}, got {type(value).__name__}")


@dataclasses.dataclass(frozen=True)
class Group(Node):
    """``and`` / ``or`` of child nodes."""

    kind: str
    children: tuple[Node, ...]

    def __post_init__(self) -> None:
        if self.kind not in ("and", "or"):
            raise QueryError(f"a group is 'and' or 'or', not {self.kind!r}")
        for child in self.children:
            _node(child)


def Q(**lookups: Any) -> Node:
    """Field conditions, and-ed: ``Q(state="Failed", created__gte=dt, queue__in=[...])``."""
    if not lookups:
        raise QueryError("Q() needs at least one condition")
    conditions = []
    for key, value in lookups.items():
        field, _, op = key.partition("__")
        conditions.append(Condition(field, op or "eq", value))
    return conditions[0] if len(conditions) == 1 else Group("and", tuple(conditions))


class P:
    """A property reference: ``P("tenant") == "acme"``, ``P("amount") > 10``."""

    def __init__(self, name: str) -> None:
        property_value(name, "x")
        self.name = name

    def _c(self, op: str, value: Any) -> Condition:
        return Condition("", op, value, prop=self.name)

    def __eq__(self, value: Any) -> Condition:  # type: ignore[override]
        return self._c("eq", value)

    def __lt__(self, value: Any) -> Condition:
        return self._c("lt", value)

    def __gt__(self, value: Any) -> Condition:
        return self._c("gt", value)

    def __le__(self, value: Any) -> Condition:
        return self._c("lte", value)

    def __ge__(self, value: Any) -> Condition:
        return self._c("gte", value)

    def like(self, pattern: str) -> Condition:
        """Text match where ``*`` is any run of characters."""
        return self._c("like", pattern)

    def isin(self, values: Iterable[Any]) -> Condition:
        return self._c("in", list(values))

    __hash__ = None  # type: ignore[assignment]


@dataclasses.dataclass(frozen=True)
class JobQuery:
    """Conditions plus order and paging; ``environment`` scopes it to one environment."""

    where: Node | None = None
    order_by: tuple[str, ...] = ("-created",)
    limit: int = 100
    offset: int = 0
    environment: str | None = None

    def __post_init__(self) -> None:
        if self.where is not None:
            _node(self.where)
        order = (self.order_by,) if isinstance(self.order_by, str) else self.order_by
        if not isinstance(order, (list, tuple)) or not all(isinstance(k, str) for k in order):
            raise QueryError("order_by is a field name or a list of field names")
        order = tuple(order)
        object.__setattr__(self, "order_by", order)
        for key in order:
            if key.lstrip("-") not in ORDER_FIELDS:
                raise QueryError(
                    f"cannot order by {key!r}; use one of {', '.join(ORDER_FIELDS)} "
                    "(prefix - for descending)"
                )
        if not _is_int(self.limit) or not 0 < self.limit <= MAX_LIMIT:
            raise QueryError(f"limit must be 1..{MAX_LIMIT}")
        if not _is_int(self.offset) or self.offset < 0:
            raise QueryError("offset must be >= 0")
        if self.environment is not None and not isinstance(self.environment, str):
            raise QueryError("environment is a name")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobQuery:
        """Build from JSON-like data (REST, CLI): see :func:`node_from_dict`."""
        if not isinstance(data, Mapping):
            raise QueryError("a query is a JSON object")
        unknown = set(data) - {"where", "order_by", "limit", "offset", "environment"}
        if unknown:
            raise QueryError(f"unknown query keys {sorted(unknown)}")
        where = node_from_dict(data["where"]) if data.get("where") is not None else None
        return cls(
            where=where,
            order_by=data.get("order_by", ("-created",)),
            limit=data.get("limit", 100),
            offset=data.get("offset", 0),
            environment=data.get("environment"),
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def node_from_dict(data: Any) -> Node:
    """``{"and": [...]}``, ``{"or": [...]}``, ``{"field": f, "op": o, "value": v}`` or
    ``{"property": name, "op": o, "value": v}``; datetimes as ISO 8601 text."""
    if not isinstance(data, Mapping):
        raise QueryError("a query condition is a JSON object")
    for kind in ("and", "or"):
        if kind in data:
            children = data[kind]
            if not isinstance(children, list) or not children:
                raise QueryError(f"'{kind}' takes a non-empty list")
            return Group(kind, tuple(node_from_dict(c) for c in children))
    op = data.get("op", "eq")
    value = data.get("value")
    if "property" in data:
        return Condition("", op, _parse_dates(value), prop=data["property"])
    field = data.get("field")
    if not isinstance(field, str):
        raise QueryError("a condition needs 'field' or 'property'")
    if FIELDS.get(field) is datetime:
        value = _parse_dates(value, force=True)
    return Condition(field, op, value)


def _parse_dates(value: Any, force: bool = False) -> Any:
    if isinstance(value, list):
        return [_parse_dates(v, force) for v in value]
    if isinstance(value, str) and (force or _ISO.match(value)):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise QueryError(f"not an ISO 8601 datetime: {value[:40]!r}") from None
    return value


_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


def like_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile a ``*`` wildcard pattern (nothing else is special) to an anchored regex."""
    return re.compile("^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$",
                      re.DOTALL)
