"""Model fields with the same text semantics on PostgreSQL, MySQL/MariaDB and SQLite.

Job ids, names, states and property texts compare exactly, as in the in-memory
store: ``"Failed"`` is not ``"failed"`` and ``"acme"`` is not ``"ACME"``. PostgreSQL
and SQLite compare bytes by default, but MySQL/MariaDB's default collations ignore
case and accents, which would merge ids that differ in case (command ids are
mixed-case) and make filters loose. :class:`ExactCharField` pins a binary collation
there. The ``bgp_like`` lookup implements the query language's ``*`` wildcard
(nothing else special) case-sensitively everywhere.
"""
from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import Lookup

from celery_bgp.jobs.relational import like_escape

__all__ = ["ExactCharField", "Like", "like_escape"]

#: Collation per vendor for exact text comparison (other vendors: their default).
BINARY_COLLATIONS = {"mysql": "utf8mb4_bin"}


class ExactCharField(models.CharField):
    """A CharField that compares case- and accent-sensitively on every database.

    On PostgreSQL its type is spelled ``character varying(n)`` (the same type as
    ``varchar(n)``), which keeps Django from adding a second ``varchar_pattern_ops``
    index to every indexed or unique column: the job table is written on every
    state change, and its lookups are exact or ``LIKE 'prefix%'`` under a C
    collation, which the plain index serves.
    """

    def db_type(self, connection: Any) -> str | None:
        db_type = super().db_type(connection)
        if connection.vendor == "postgresql" and db_type and db_type.startswith("varchar("):
            return "character varying" + db_type[len("varchar"):]
        return db_type

    def db_parameters(self, connection: Any) -> dict[str, Any]:
        params = super().db_parameters(connection)
        if self.db_collation is None and connection.vendor in BINARY_COLLATIONS:
            params["collation"] = BINARY_COLLATIONS[connection.vendor]
        return params


@ExactCharField.register_lookup
class Like(Lookup):
    """``field__bgp_like="ab*c"``: ``*`` is any run of characters, case-sensitive."""

    lookup_name = "bgp_like"
    prepare_rhs = False

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        if not isinstance(self.rhs, str):
            raise TypeError("bgp_like needs a text pattern")
        params = [*lhs_params, like_escape(self.rhs, connection.vendor)]
        if connection.vendor == "sqlite":
            return f"{lhs} GLOB %s", params
        if connection.vendor == "mysql":  # backslash is MySQL's default LIKE escape
            return f"{lhs} LIKE %s", params
        return f"{lhs} LIKE %s ESCAPE '\\'", params
