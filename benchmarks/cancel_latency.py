"""How long a running job takes to stop once it is cancelled, on a real worker.

    python benchmarks/cancel_latency.py [-n 50] [--baseline-lock 6]

Latency = from just before ``bgp.jobs.cancel(job_id)`` to the Cancelled state's time
(written by the worker: the same machine's clock, no polling error). Each job is
cancelled 0.05-0.25 s after it became Executing, one at a time, on one worker
(concurrency 2) on Redis with the Django store on PostgreSQL:

- the control channel (``bgp_cancel``), prefork and threads pools, default 60 s lock;
- ``terminate=True`` on a job that ignores its token (prefork: the child is killed);
- baseline, in the same run: the heartbeat alone (what cancel did before: the request
  is only stored), with a ``--baseline-lock`` lock so it is feasible. It checks every
  lock / 3 s from the job's start, so a cancel 0.05-0.25 s into the run waits nearly
  lock / 3; with the default 60 s lock that is up to 20 s (10 s on average over a run).

The database ``bgp_bench_cancel`` is created (dropped first) by this script; the broker
is ``BGP_BENCH_BROKER`` (default: a private redis-server, see private_redis.py), on a
queue of its own.
"""
from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks import private_redis  # noqa: E402,F401  (before the app reads its URLs)

DB = "bgp_bench_cancel"
os.environ["BGP_BENCH_DB"] = DB
QUEUE = f"bench-cancel-{uuid.uuid4().hex[:8]}"
os.environ["BGP_BENCH_QUEUE"] = QUEUE


def reset_database() -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{DB}"')


def percentile(values: list[float], p: float) -> float:
    """Nearest rank: with 50 values, p99 is the largest."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def measure(bgp, fn, n: int, *, terminate: bool = False, store_only: bool = False
            ) -> list[float]:
    from celery_bgp.commands import utcnow

    latencies = []
    for _ in range(n):
        job_id = bgp.jobs.enqueue(fn, 120)
        bgp.jobs.wait(job_id, states=["Executing"], timeout=60, interval=0.01)
        time.sleep(random.uniform(0.05, 0.25))  # somewhere in its run
        asked = utcnow()
        if store_only:
            bgp.jobs.store.request_cancel(job_id)  # the heartbeat path alone
        else:
            bgp.jobs.cancel(job_id, terminate=terminate)
        job = bgp.jobs.wait(job_id, timeout=120, interval=0.01)
        if job.state != "Cancelled":
            raise RuntimeError(f"job {job_id} ended {job.state}")
        latencies.append((bgp.jobs.history(job_id)[-1].elected - asked).total_seconds())
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50)
    parser.add_argument("--baseline-lock", type=float, default=6.0,
                        help="job_lock_timeout of the heartbeat baseline's worker (s)")
    args = parser.parse_args()
    reset_database()
    from django.core.management import call_command

    from benchmarks.cancel_app import bgp, loop, sleeper
    from tests.helpers.workers import WorkerProcess

    call_command("migrate", verbosity=0)
    env = {"BGP_BENCH_DB": DB, "BGP_BENCH_QUEUE": QUEUE}
    rows: list[tuple[str, list[float]]] = []
    runs = [
        ("control channel, prefork", "prefork", {}, loop, {}),
        ("control channel, threads", "threads", {}, loop, {}),
        ("terminate=True, prefork (ignores token)", "prefork", {}, sleeper,
         {"terminate": True}),
        (f"baseline: heartbeat only, lock {args.baseline_lock:g} s", "prefork",
         {"BGP_BENCH_LOCK_TIMEOUT": str(args.baseline_lock)}, loop, {"store_only": True}),
    ]
    for label, pool, extra, fn, options in runs:
        with WorkerProcess("benchmarks.cancel_app", {**env, **extra}, [QUEUE], pool=pool,
                           concurrency=2):
            rows.append((label, measure(bgp, fn, args.n, **options)))
    print(f"\n{args.n} cancels per row, one at a time; worker -c 2, Redis, PostgreSQL")
    print("latency = bgp.jobs.cancel -> Cancelled state (worker clock), milliseconds")
    print(f"{'':42}{'p50':>9}{'p99':>9}{'mean':>9}{'max':>9}")
    for label, values in rows:
        ms = [v * 1000 for v in values]
        print(f"{label:42}{percentile(ms, 50):>9,.0f}{percentile(ms, 99):>9,.0f}"
              f"{statistics.mean(ms):>9,.0f}{max(ms):>9,.0f}")
    base, fast = rows[-1][1], rows[0][1]
    third = args.baseline_lock / 3
    ratio = percentile(base, 50) / percentile(fast, 50)
    print(f"baseline p50 / control channel p50: {ratio:.0f}x. The heartbeat comes every"
          f" lock / 3 = {third:g} s from the job's start; cancelled")
    print("0.05-0.25 s into the run, a job waits nearly that long. With the default 60 s lock:"
          " up to 20 s (10 s on average over a run).")


if __name__ == "__main__":
    main()
