"""The typed property indexes: partial where the database can, full where it cannot.

A property row fills one of five value columns. An index on ``(name, value_int,
job)`` over every row would hold four rows in five with a NULL value: five indexes
written per property and five times the memory. Where the database has partial
indexes (PostgreSQL, SQLite) each index covers only the rows of its type
(``WHERE value_int IS NOT NULL``), so a property row enters one of them.
MySQL/MariaDB have none: there the same index covers every row. The condition is
kept out of ``Index.condition`` so Django does not warn about it on MySQL.

``by_name=False`` leaves the property name out (``(<column>, job)``): the admin's
search finds a job by a property value ("A-1002") without knowing which property
holds it.
"""
from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import Q

__all__ = ["TypedValueIndex"]


class TypedValueIndex(models.Index):
    """Index ``(name, <column>, job)`` (or ``(<column>, job)``) of the property rows whose
    ``<column>`` is set."""

    def __init__(self, *, column: str, name: str, by_name: bool = True, **kwargs: Any) -> None:
        kwargs.pop("fields", None)
        fields = ["name", column, "job"] if by_name else [column, "job"]
        super().__init__(fields=fields, name=name, **kwargs)
        self.column = column
        self.by_name = by_name

    def deconstruct(self) -> tuple[str, Any, dict[str, Any]]:
        path, args, kwargs = super().deconstruct()
        kwargs.pop("fields", None)
        kwargs["column"] = self.column
        if not self.by_name:
            kwargs["by_name"] = False
        return path, args, kwargs

    def _get_condition_sql(self, model: Any, schema_editor: Any) -> str | None:
        if not schema_editor.connection.features.supports_partial_indexes:
            return None
        self.condition = Q(**{f"{self.column}__isnull": False})
        try:
            return super()._get_condition_sql(model, schema_editor)
        finally:
            self.condition = None
