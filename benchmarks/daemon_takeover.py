"""Takeover of a cluster daemon when its worker is SIGKILLed: how long, and never twice.

    python benchmarks/daemon_takeover.py [--workers 3] [--kills 20] [--seconds 60]
                                         [--lock-timeout 2]

Starts ``--workers`` real ``celery worker`` processes (solo pool, private redis-server
as broker, the SQLAlchemy job store on a PostgreSQL database of its own, dropped at the
end) that all declare the ``ticker`` cluster daemon (``tests/apps/daemon_fns.py``):
every 50 ms it sets its own short-lived "alive" key in Redis and records an overlap if
another copy's key exists. ``--kills`` times, spread over ``--seconds``, the worker
running the daemon is SIGKILLed (then started again), and the time until the next copy
starts is measured. Reported: takeover p50/max against the lease timeout (the baseline:
a copy must take over within about one timeout), and the overlap count (must be 0).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import private_redis  # noqa: E402,F401  (before the app reads its URLs)
from tests.helpers.sqlalchemy_databases import temporary_database  # noqa: E402
from tests.helpers.workers import WorkerProcess  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--lock-timeout", type=float, default=2.0)
    args = parser.parse_args()

    import redis

    from celery_bgp.contrib.sqlalchemy.migrate import upgrade

    key = f"bgp-bench-daemon-{uuid.uuid4().hex[:8]}"
    sink_url = os.environ["BGP_BENCH_COUNTER"]
    sink = redis.Redis.from_url(sink_url, decode_responses=True)
    with temporary_database("postgresql", "bgp_bench_daemon") as url:
        upgrade(url)
        env = {"BGP_BENCH_BROKER": os.environ["BGP_BENCH_BROKER"],
               "BGP_BENCH_JOB_STORE": f"db+{url}" if not url.startswith("db+") else url,
               "BGP_BENCH_LOCK_TIMEOUT": str(args.lock_timeout),
               "BGP_TEST_SINK": sink_url, "BGP_TEST_DAEMON_KEY": key}
        workers = [WorkerProcess("benchmarks.daemon_takeover_app", env, [key], pool="solo",
                                 concurrency=1) for _ in range(args.workers)]
        threads = [threading.Thread(target=w.start, args=(120,)) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        takeovers = run(sink, key, workers, args)
        for worker in workers:
            worker.stop(30)
        overlaps = sink.llen(f"{key}:ticker:overlaps")
        report(takeovers, overlaps, args)
        for name in ("starts", "ends", "overlaps"):
            sink.delete(f"{key}:ticker:{name}")


def starts(sink, key):
    items = sink.lrange(f"{key}:ticker:starts", 0, -1)
    return [(float(t), who.split("|")[0]) for t, who in (i.split(" ", 1) for i in items)]


def run(sink, key, workers, args) -> list[float]:
    """Kill the daemon's worker ``--kills`` times; return each takeover's seconds."""
    by_host = {w.hostname: w for w in workers}
    every = args.seconds / args.kills
    takeovers: list[float] = []
    deadline = time.monotonic() + 60
    while not starts(sink, key):
        assert time.monotonic() < deadline, "the daemon never started"
        time.sleep(0.05)
    began = time.monotonic()
    for n in range(args.kills):
        time.sleep(max(0.0, began + n * every - time.monotonic()))
        seen = starts(sink, key)
        victim = by_host[seen[-1][1]]
        victim.kill()
        killed = time.time()
        deadline = time.monotonic() + 10 * args.lock_timeout + 30
        while len(starts(sink, key)) == len(seen):
            assert time.monotonic() < deadline, "no takeover"
            time.sleep(0.02)
        started, where = starts(sink, key)[len(seen)]
        takeovers.append(started - killed)
        print(f"kill {n + 1:2d}: {victim.hostname} -> {where} in {started - killed:.2f} s",
              flush=True)
        threading.Thread(target=victim.start, args=(120,), daemon=True).start()
    return takeovers


def report(takeovers: list[float], overlaps: int, args) -> None:
    p50, worst = statistics.median(takeovers), max(takeovers)
    t = args.lock_timeout
    print(f"\n{len(takeovers)} SIGKILLs, {args.workers} workers, lease timeout {t:.1f} s")
    print(f"takeover p50 {p50:.2f} s ({p50 / t:.2f} x timeout), max {worst:.2f} s "
          f"({worst / t:.2f} x timeout)")
    print(f"overlaps (two copies ticking at once): {overlaps}")


if __name__ == "__main__":
    main()
