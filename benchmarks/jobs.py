"""Tracked jobs against plain Celery with django-celery-results, on PostgreSQL.

    python benchmarks/jobs.py [-n 5000] [--rounds 2]

One worker (prefork, concurrency 2) on Redis runs both; in the same run, N jobs are
enqueued and completed with the Django job store, and N plain ``@app.task`` calls are
sent with ``result_backend="django-db"`` and ``result_extended=True`` (what a Django user
has today to see tasks in the admin). Throughput = N / (first send -> last completion).
Goal (issue 4): at least 0.6 of plain Celery. The search/count latency over 200,000
stored jobs is benchmarks/jobs_query.py.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks import private_redis  # noqa: E402  (before the app reads its URLs)

DB = "bgp_bench_throughput"
os.environ["BGP_BENCH_DB"] = DB


def reset_database() -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{DB}"')


def wait(count_done, n: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while count_done() < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count_done()} of {n} done")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    reset_database()
    from django.core.management import call_command

    from benchmarks.jobs_app import add, app, bgp, plain_add
    from celery_bgp.jobs import Q
    from tests.helpers.workers import WorkerProcess

    call_command("migrate", verbosity=0)
    import redis
    from django_celery_results.models import TaskResult

    if private_redis.OWNED:  # never empty a database of a Redis you pointed us at
        redis.Redis.from_url(app.conf.broker_url).flushdb()
    plain_rates, job_rates = [], []
    with WorkerProcess("benchmarks.jobs_app", {"BGP_BENCH_DB": DB}, ["bench-jobs"],
                       concurrency=2):
        for _ in range(args.rounds):
            TaskResult.objects.all().delete()
            start = time.perf_counter()
            for i in range(args.n):
                plain_add.delay(i, i)
            wait(lambda: TaskResult.objects.filter(status="SUCCESS").count(), args.n)
            plain_rates.append(args.n / (time.perf_counter() - start))

            before = bgp.jobs.count(Q(state="Succeeded"))
            start = time.perf_counter()
            for i in range(args.n):
                bgp.jobs.enqueue(add, i, i)
            wait(lambda b=before: bgp.jobs.count(Q(state="Succeeded")) - b, args.n)
            job_rates.append(args.n / (time.perf_counter() - start))
    plain, jobs = statistics.median(plain_rates), statistics.median(job_rates)
    print(f"\nN={args.n}, {args.rounds} rounds, median; worker prefork -c 2, Redis, PostgreSQL")
    print(f"{'':34}{'plain Celery+results':>22}{'celery-bgp jobs':>18}{'ratio':>8}")
    print(f"{'enqueue-to-complete jobs/s':34}{plain:>22,.0f}{jobs:>18,.0f}{jobs / plain:>8.2f}")


if __name__ == "__main__":
    main()
