"""A PostgreSQL database of a benchmark's own: made anew, dropped at the end.

Set as ``BGP_BENCH_DB`` before ``benchmarks.jobs_app`` configures Django, so import the
app inside the ``with`` block.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

ADMIN = "host=127.0.0.1 user=postgres dbname=postgres"


@contextlib.contextmanager
def own_database(name: str) -> Iterator[str]:
    """Drop ``name`` if it is there, create it, yield it; close Django's connections
    and drop it afterwards, whatever happened."""
    import psycopg

    os.environ["BGP_BENCH_DB"] = name
    with psycopg.connect(ADMIN, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(ADMIN, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
