"""Tracked jobs against plain Celery with django-celery-results, on PostgreSQL.

    python benchmarks/jobs.py [-n 5000] [--rounds 2] [--store db+postgresql://...]

One worker (prefork, concurrency 2) on Redis runs both; in the same run, N jobs are
enqueued and completed with the Django job store, and N plain ``@app.task`` calls are
sent with ``result_backend="django-db"`` and ``result_extended=True`` (what a Django user
has today to see tasks in the admin). Throughput = N / (first send -> last completion).
Goal (issue 4): at least 0.6 of plain Celery. The search/count latency over 200,000
stored jobs is benchmarks/jobs_query.py.

``--store db+postgresql://...`` adds the SQLAlchemy job store on that database (its
tables are created or upgraded, nothing is dropped): the same N jobs through a worker
started on it, in the same run, and the round trips one job costs each store on
PostgreSQL (psycopg statements sent: create, then the worker's read and two
transitions). ``BGP_BENCH_BROKER`` names the Redis database used as broker: it is
flushed, so give the benchmark one of its own.
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

DB = os.environ.setdefault("BGP_BENCH_DB", "bgp_bench_throughput")  # dropped and made anew


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
    parser.add_argument("--store", help="also the SQLAlchemy store: db+postgresql://...")
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
    rows = [("celery-bgp jobs, Django store", jobs, round_trips(bgp))]
    if args.store:
        rows.append(("celery-bgp jobs, SQLAlchemy store", sqlalchemy_rate(args), None))
        from benchmarks.jobs_app import publisher

        rows[-1] = (rows[-1][0], rows[-1][1], round_trips(publisher(args.store)))
    print(f"\nN={args.n}, {args.rounds} rounds, median; worker prefork -c 2, Redis, PostgreSQL")
    print(f"{'enqueue-to-complete jobs/s':36}{'jobs/s':>10}{'ratio':>8}"
          f"{'round trips (create + worker)':>32}")
    print(f"{'plain Celery + django-db results':36}{plain:>10,.0f}{1:>8.2f}")
    for label, rate, trips in rows:
        create, worker = trips
        print(f"{label:36}{rate:>10,.0f}{rate / plain:>8.2f}{f'{create} + {worker}':>32}")


def sqlalchemy_rate(args) -> float:
    """Jobs/s of the SQLAlchemy store on ``args.store``, through a worker started on it."""
    from benchmarks.jobs_app import add, publisher
    from celery_bgp.contrib.sqlalchemy.migrate import upgrade
    from celery_bgp.jobs import Q
    from tests.helpers.workers import WorkerProcess

    upgrade(args.store)
    bgp = publisher(args.store)
    rates = []
    env = {"BGP_BENCH_DB": DB, "BGP_BENCH_STORE": args.store}
    with WorkerProcess("benchmarks.jobs_app", env, ["bench-jobs"], concurrency=2):
        for _ in range(args.rounds):
            before = bgp.jobs.count(Q(state="Succeeded"))
            start = time.perf_counter()
            for i in range(args.n):
                bgp.jobs.enqueue(add, i, i)
            wait(lambda b=before: bgp.jobs.count(Q(state="Succeeded")) - b, args.n)
            rates.append(args.n / (time.perf_counter() - start))
    return statistics.median(rates)


def round_trips(bgp) -> tuple[int, int]:
    """psycopg statements one job costs: its creation, then what a worker does (read,
    Executing with the lock, the final state releasing it). Each is one round trip:
    the hot paths run in autocommit, BEGIN and COMMIT inside the statements."""
    import psycopg

    from benchmarks.jobs_app import add
    from celery_bgp.jobs.states import Executing, Succeeded

    bgp.jobs.store.get("warm-up")  # connect (and let the driver introspect) first
    sent = [0]
    originals = {cls: cls.execute for cls in (psycopg.Cursor, psycopg.ClientCursor)}

    def counting(original):
        def execute(self, *a, **kw):
            sent[0] += 1
            return original(self, *a, **kw)
        return execute

    for cls, original in originals.items():
        cls.execute = counting(original)
    try:
        bgp.jobs._publish = lambda job, when: None  # the broker is not what is counted
        job_id = bgp.jobs.enqueue(add, 1, 2)
        create, sent[0] = sent[0], 0
        job = bgp.jobs.store.get(job_id)
        holder = f"bench/{job.execution_id}"
        change = bgp.jobs.machine.change(
            job_id, Executing(worker="bench", execution_id=job.execution_id, attempt=1),
            holder=holder, job=job, expected={"Enqueued"}, take_lock=60, durable=False)
        bgp.jobs.machine.change(job_id, Succeeded(duration=0.0, result=3), holder=holder,
                                job=change.job, expected={"Executing"}, release_lock=True,
                                durable=False, changes={"result": 3})
        return create, sent[0]
    finally:
        for cls, original in originals.items():
            cls.execute = original


if __name__ == "__main__":
    main()
