"""procrastinate side of benchmarks/jobs.py: the same no-op job, on the same PostgreSQL.

procrastinate (a PostgreSQL-backed task queue that keeps every job's status in a
table, as the celery-bgp job store does) is a benchmark-only dependency:
``pip install procrastinate``. The worker (``procrastinate --app ... worker``) uses the
asynchronous connector; the publisher in benchmarks/jobs.py the synchronous one.
"""
from __future__ import annotations

import os

import procrastinate

DB = os.environ.get("BGP_BENCH_DB", "bgp_bench_throughput")
CONNINFO = f"host=127.0.0.1 user=postgres dbname={DB}"

if os.environ.get("BGP_BENCH_PROCRASTINATE_WORKER"):
    connector: procrastinate.BaseConnector = procrastinate.PsycopgConnector(conninfo=CONNINFO)
else:
    connector = procrastinate.SyncPsycopgConnector(conninfo=CONNINFO)
app = procrastinate.App(connector=connector)


@app.task(name="bench.procrastinate_add", queue="bench-jobs")
async def add(a: int, b: int) -> int:
    """The same work as the tracked job and the plain task."""
    return a + b
