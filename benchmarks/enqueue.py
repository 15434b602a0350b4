"""The enqueue alone: ``bgp.jobs.enqueue`` against ``task.delay``, no worker running.

    python benchmarks/enqueue.py [-n 2000] [--rounds 2] [--db NAME] [--prepare-threshold N]

In one process, on the Django job store (PostgreSQL, database ``--db``, default
``bgp_bench_enqueue``, dropped and made anew) and the benchmark's own redis-server, rounds
alternate between:

- ``delay``: a plain task's ``delay`` (the message only);
- ``enqueue``: ``bgp.jobs.enqueue`` (the job row committed durably, then the message);
- ``enqueue in atomic()``: the same inside ``transaction.atomic()``, as in a view with
  ``ATOMIC_REQUESTS`` (the row in a savepoint of the transaction, the message sent when
  it commits; the block's BEGIN and COMMIT are part of the call measured).

Printed per kind: CPU per call in this process and in the PostgreSQL backend serving it,
and the call's latency (p50, p99), with ratios to ``delay``. Nothing consumes the
messages: the queue is the benchmark's own. ``--prepare-threshold N`` sets Django's
``OPTIONS["prepare_threshold"]`` on the alias (the store's insert is then prepared).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.scratch_db import add_options, app_database  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    add_options(parser, "bgp_bench_enqueue")
    args = parser.parse_args()
    import psutil

    with app_database(args):
        from django.db import connection, transaction

        from benchmarks.jobs_app import add, bgp, plain_add

        def in_atomic(i: int) -> None:
            with transaction.atomic():
                bgp.jobs.enqueue(add, i, i)

        kinds = {"delay": lambda i: plain_add.delay(i, i),
                 "enqueue": lambda i: bgp.jobs.enqueue(add, i, i),
                 "enqueue in atomic()": in_atomic}
        cpu: dict[str, list[float]] = {k: [] for k in kinds}
        server: dict[str, list[float]] = {k: [] for k in kinds}
        latency: dict[str, list[float]] = {k: [] for k in kinds}
        for call in kinds.values():  # warm up (connections, imports)
            for i in range(50):
                call(i)
        backend = psutil.Process(connection.connection.info.backend_pid)

        def server_cpu() -> float:
            return sum(backend.cpu_times()[:2])

        for _ in range(args.rounds):
            for kind, call in kinds.items():
                cpu0, server0 = time.process_time(), server_cpu()
                for i in range(args.n):
                    t0 = time.perf_counter()
                    call(i)
                    latency[kind].append(time.perf_counter() - t0)
                cpu[kind].append((time.process_time() - cpu0) / args.n)
                server[kind].append((server_cpu() - server0) / args.n)
        print(f"\nN={args.n} per round, {args.rounds} rounds, alternating; no worker running")
        if args.prepare_threshold is not None:
            print(f"OPTIONS prepare_threshold {args.prepare_threshold}")
        print(f"{'':22}{'CPU/call':>10}{'PG CPU':>10}{'p50':>10}{'p99':>10}{'CPU x':>8}"
              f"{'p50 x':>8}")
        base_cpu = statistics.median(cpu["delay"])
        base_p50 = statistics.median(latency["delay"])
        for kind in kinds:
            p50 = statistics.median(latency[kind])
            p99 = statistics.quantiles(latency[kind], n=100)[98]
            mid = statistics.median(cpu[kind])
            pg = statistics.median(server[kind])
            print(f"{kind:22}{mid * 1e6:>8,.0f}us{pg * 1e6:>8,.0f}us{p50 * 1e3:>8.2f}ms"
                  f"{p99 * 1e3:>8.2f}ms"
                  f"{mid / base_cpu:>8.2f}{p50 / base_p50:>8.2f}")


if __name__ == "__main__":
    main()
