"""A PostgreSQL database of a benchmark's own: made anew, dropped at the end.

Set as ``BGP_BENCH_DB`` before ``benchmarks.jobs_app`` configures Django, so import the
app inside the ``with`` block (:func:`app_database` does, and migrates it).
"""
from __future__ import annotations

import argparse
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


def add_options(parser: argparse.ArgumentParser, default: str) -> None:
    """``--db NAME`` and ``--prepare-threshold N``, for :func:`app_database`."""
    parser.add_argument("--db", default=default,
                        help="PostgreSQL database (dropped, made anew)")
    parser.add_argument("--prepare-threshold", type=int, metavar="N",
                        help="Django's OPTIONS[\"prepare_threshold\"] on the alias")


@contextlib.contextmanager
def app_database(args: argparse.Namespace) -> Iterator[str]:
    """:func:`own_database` for ``args.db``, with ``benchmarks.jobs_app`` configured on
    it (``args.prepare_threshold`` in its OPTIONS, the benchmarks' own Redis as its
    broker) and migrated."""
    if args.prepare_threshold is not None:  # read by benchmarks.jobs_app's settings
        os.environ["BGP_BENCH_PREPARE_THRESHOLD"] = str(args.prepare_threshold)
    with own_database(args.db) as name:
        import importlib

        from django.core.management import call_command

        importlib.import_module("benchmarks.private_redis")  # first: the app's broker URL
        importlib.import_module("benchmarks.jobs_app")  # configures Django

        call_command("migrate", verbosity=0)
        yield name
