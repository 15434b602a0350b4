"""celery-bgp overhead against plain Celery on Redis, measured in one run.

N commands are dispatched and processed end to end by one real worker (prefork,
concurrency 2) with the Redis event repository, against the same payload sent to a
plain ``@app.task`` on the same worker. Rounds alternate to share the noise.

    python benchmarks/overhead.py [-n 2000] [--rounds 3] [--acks-late]

``--acks-late`` runs both under the at-least-once acknowledgement (``task_acks_late``,
prefetch 1), where a command's final event is written before its message is acked.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import private_redis  # noqa: E402  (before the app reads its URLs)
from benchmarks.overhead_app import (  # noqa: E402
    BROKER,
    COUNTER,
    EVENTS,
    BenchCommand,
    bgp,
    plain,
)
from celery_bgp import EventStatus  # noqa: E402
from tests.helpers.workers import WorkerProcess  # noqa: E402

TEXT = "x" * 200


def wait_count(counter: redis.Redis, key: str, n: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while int(counter.get(key) or 0) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{counter.get(key)} of {n} processed")
        time.sleep(0.005)


def run_plain(counter: redis.Redis, n: int) -> tuple[float, float]:
    key = f"plain-{uuid.uuid4().hex}"
    start = time.perf_counter()
    for i in range(n):
        plain.delay({"key": key, "text": TEXT, "number": i})
    dispatched = time.perf_counter()
    wait_count(counter, key, n)
    return n / (dispatched - start), n / (time.perf_counter() - start)


def run_bgp(counter: redis.Redis, n: int) -> tuple[float, float]:
    key = f"bgp-{uuid.uuid4().hex}"
    commands = [BenchCommand(key=key, text=TEXT, number=i) for i in range(n)]
    start = time.perf_counter()
    for command in commands:
        bgp.dispatch(command)
    dispatched = time.perf_counter()
    wait_count(counter, key, n)
    elapsed = time.perf_counter() - start
    bgp.events.flush()
    missing = [c.id for c in commands[-50:]
               if (bgp.events.wait_for(c.id, timeout=30).status is not EventStatus.PROCESSED)]
    assert not missing, f"commands without PROCESSED: {missing[:3]}"
    return n / (dispatched - start), n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--acks-late", action="store_true",
                        help="acknowledge after the task (the at_least_once preset)")
    args = parser.parse_args()
    if private_redis.OWNED:  # never empty databases of a Redis you pointed us at
        for url in (BROKER, EVENTS, COUNTER):
            redis.Redis.from_url(url).flushdb()
    counter = redis.Redis.from_url(COUNTER)
    env = {"BGP_BENCH_BROKER": BROKER, "BGP_BENCH_EVENTS": EVENTS, "BGP_BENCH_COUNTER": COUNTER}
    if args.acks_late:
        env["BGP_BENCH_ACKS_LATE"] = "1"
    with WorkerProcess("benchmarks.overhead_app", env, ["bench"], concurrency=2):
        run_plain(counter, 200)  # warm up both paths
        run_bgp(counter, 200)
        results: dict[str, list[tuple[float, float]]] = {"plain": [], "bgp": []}
        for _ in range(args.rounds):
            results["plain"].append(run_plain(counter, args.n))
            results["bgp"].append(run_bgp(counter, args.n))
    med = {name: (statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows))
           for name, rows in results.items()}
    acks = "acks_late" if args.acks_late else "acks early (Celery's default)"
    print(f"\nN={args.n} per round, {args.rounds} rounds, median; worker prefork -c 2, Redis, "
          f"{acks}")
    print(f"{'':28}{'plain Celery':>14}{'celery-bgp':>14}{'ratio':>8}")
    print(f"{'dispatch calls/s':28}{med['plain'][0]:>14,.0f}{med['bgp'][0]:>14,.0f}"
          f"{med['bgp'][0] / med['plain'][0]:>8.2f}")
    print(f"{'end-to-end commands/s':28}{med['plain'][1]:>14,.0f}{med['bgp'][1]:>14,.0f}"
          f"{med['bgp'][1] / med['plain'][1]:>8.2f}")


if __name__ == "__main__":
    main()
