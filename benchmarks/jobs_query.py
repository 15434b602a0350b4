"""Search and count latency of the Django job store over 200,000 jobs on PostgreSQL.

    python benchmarks/jobs_query.py [--jobs 200000] [--rounds 200] [--refill] [--explain]

Fills a database of its own (``bgp_bench_jobs`` on 127.0.0.1:5432, created when
missing and kept for the next run unless ``--refill``) with jobs that look like a
busy system's: three states each, three typed properties (``tenant``: text, 200
values; ``amount``: int or float; ``vip``: bool), five queues, five priorities, a
month of creation times. Rows go in with ``bulk_create`` in batches of 10,000.

Each query runs ``--rounds`` times through :class:`DjangoJobStore` (``search`` with
its default order ``-created`` and a page of 100, and ``count``) with a different
value each round, environment-scoped as the engine's queries are. The baseline,
measured in the same run, is a plain Django ORM page of 100 jobs by an indexed job
column. Goal (issue 4): an indexed property search p50 under 20 ms.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import django  # noqa: E402
from django.conf import settings  # noqa: E402

DB_NAME = "bgp_bench_jobs"
QUEUES = ["default", "mail", "sms", "reports", "billing"]
STATES = ["Succeeded"] * 16 + ["Failed"] * 2 + ["Enqueued", "Executing"]
TENANTS = 200
BATCH = 10_000
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def configure() -> None:
    settings.configure(
        DATABASES={"default": {
            "ENGINE": "django.db.backends.postgresql", "NAME": DB_NAME, "USER": "postgres",
            "HOST": "127.0.0.1", "PORT": 5432,
        }},
        INSTALLED_APPS=["django.contrib.contenttypes", "celery_bgp.contrib.django"],
        USE_TZ=True, TIME_ZONE="UTC", DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
    import psycopg

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres",
                         autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                            (DB_NAME,)).fetchone():
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def fill(n: int) -> None:
    """Insert ``n`` jobs with their states and properties, batch by batch."""
    from django.db import connection

    from celery_bgp.contrib.django.models import Job, JobProperty, JobState

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE celery_bgp_job CASCADE")
    rng = random.Random(42)
    start = time.perf_counter()
    for first in range(0, n, BATCH):
        jobs, states, props = [], [], []
        for i in range(first, min(first + BATCH, n)):
            job_id = f"{i:08d}{rng.getrandbits(64):016x}"
            created = T0 + timedelta(seconds=i * 13 + rng.random())
            state = rng.choice(STATES)
            jobs.append(Job(
                id=job_id, name=f"app.jobs:task{i % 40}", kind="callable",
                queue=QUEUES[i % 5], priority=rng.randrange(5), environment="default",
                state=state, created=created, modified=created + timedelta(seconds=5),
                args=[i, "payload"], kwargs={"n": i}, attempt=1, sequence=3,
                worker=f"worker{i % 8}@host" if state != "Enqueued" else None,
            ))
            for seq, name in enumerate(("Enqueued", "Executing", state), start=1):
                states.append(JobState(job_id=job_id, sequence=seq, name=name,
                                       elected=created + timedelta(seconds=seq), data={}))
            amount = rng.randrange(100_000)
            props += [
                JobProperty(job_id=job_id, name="tenant", value_text=f"tenant-{i % TENANTS}"),
                JobProperty(job_id=job_id, name="amount", value_int=amount)
                if i % 2 else JobProperty(job_id=job_id, name="amount", value_float=amount + 0.5),
                JobProperty(job_id=job_id, name="vip", value_bool=i % 50 == 0),
            ]
        Job.objects.bulk_create(jobs)
        JobState.objects.bulk_create(states)
        JobProperty.objects.bulk_create(props)
        done = first + len(jobs)
        print(f"\r  filled {done:,} jobs ({done / (time.perf_counter() - start):,.0f}/s)",
              end="", flush=True)
    print()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")


def timed(fn, rounds: int) -> list[float]:
    """Milliseconds of ``fn(round)`` for each round (after 5 warm-up calls)."""
    for i in range(5):
        fn(i)
    samples = []
    for i in range(rounds):
        start = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def pct(samples: list[float], p: float) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[int(p) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--refill", action="store_true")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE")
    args = parser.parse_args()
    configure()
    from celery_bgp.contrib.django.models import Job
    from celery_bgp.contrib.django.queries import filtered
    from celery_bgp.contrib.django.store import DjangoJobStore
    from celery_bgp.jobs.query import JobQuery, P, Q

    if args.refill or Job.objects.count() != args.jobs:
        print(f"filling {DB_NAME} with {args.jobs:,} jobs")
        fill(args.jobs)
    store = DjangoJobStore()

    def tenant_no(i):
        return (i * 7 + i // TENANTS) % TENANTS

    def tenant(i):
        return f"tenant-{tenant_no(i)}"

    queries = {
        "tenant = x (0.5%)": lambda i: P("tenant") == tenant(i),
        "state=Failed & tenant = x": lambda i: Q(state="Failed") & (P("tenant") == tenant(i)),
        "amount in [a, a+500) (0.5%)": lambda i: (P("amount") >= i * 400)
        & (P("amount") < i * 400 + 500),
        "vip = true (2%)": lambda i: P("vip") == True,  # noqa: E712
        "queue=q & tenant = x": lambda i: Q(queue=QUEUES[tenant_no(i) % 5])
        & (P("tenant") == tenant(i)),
        "past_state=Failed & tenant": lambda i: Q(past_state="Failed")
        & (P("tenant") == tenant(i)),
    }

    def query(where) -> JobQuery:
        return JobQuery(where, environment="default", limit=100)

    baseline = timed(lambda i: list(Job.objects.filter(queue=QUEUES[i % 5])
                                    .order_by("-created")[:100]), args.rounds)
    base = statistics.median(baseline)
    print(f"\n{args.jobs:,} jobs, {args.rounds} rounds each, page of 100, newest first")
    print(f"baseline (plain ORM, queue = q): p50 {base:.2f} ms  p95 {pct(baseline, 95):.2f} ms")
    print(f"{'query':34} {'search p50':>10} {'p95':>7} {'x base':>7}   "
          f"{'count p50':>9} {'p95':>7} {'x base':>7}  matches")
    for label, where in queries.items():
        search = timed(lambda i, w=where: store.search(query(w(i))), args.rounds)
        count = timed(lambda i, w=where: store.count(query(w(i))), args.rounds)
        matches = store.count(query(where(1)))
        print(f"{label:34} {statistics.median(search):10.2f} {pct(search, 95):7.2f} "
              f"{statistics.median(search) / base:7.2f}   {statistics.median(count):9.2f} "
              f"{pct(count, 95):7.2f} {statistics.median(count) / base:7.2f}  {matches:,}")
        if args.explain:
            qs = filtered(query(where(1)), "default")
            print(qs.order_by("-created")[:100].explain(analyze=True))
            print(qs.order_by().explain(analyze=True), "\n")  # the scan count() does


if __name__ == "__main__":
    main()
