"""What a worker's SQL costs per job, without Celery: client and PostgreSQL CPU.

    python benchmarks/job_statements.py [-n 3000] [--db NAME] [--server-side-binding]
                                        [--prepare-threshold N]

In one process, on the Django job store (PostgreSQL, database ``--db``, default
``bgp_bench_statements``, dropped and made anew): N jobs are created (their messages
are not sent), then each runs through the worker's own code path (``run_job``, as a
``bgp.job`` task from a message would: the job read, Executing with the lock, the no-op
callable, the final state releasing the lock) one after the other. Printed: this
process's CPU per job, the CPU of the PostgreSQL backends serving it per job (the
worker's kept connection and Django's own, which the ORM path uses), and the
wall time per job. Before each job the store forgets the row version it remembered
when creating it, as a worker process (which did not create the job) would not have
it. Run it from two checkouts, alternating, to compare them on the same machine.
``--server-side-binding`` sets Django's ``OPTIONS["server_side_binding"]`` on the alias,
``--prepare-threshold N`` its ``OPTIONS["prepare_threshold"]`` (psycopg prepares a
statement run N times; the store's then are).
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.scratch_db import ADMIN, add_options, app_database  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=3000)
    add_options(parser, "bgp_bench_statements")
    parser.add_argument("--server-side-binding", action="store_true",
                        help='the alias binds parameters on the server (Django\'s OPTIONS)')
    args = parser.parse_args()
    import psutil
    import psycopg

    with app_database(args):
        from django.db import connections

        from benchmarks.jobs_app import add, bgp
        from celery_bgp.contrib.django import kept
        from celery_bgp.jobs.runner import run_job

        if args.server_side_binding:
            connections["default"].settings_dict["OPTIONS"]["server_side_binding"] = True
            connections["default"].close()  # connects again with the option's cursors
        bgp.jobs._publish = lambda job, when: None  # no broker: only the SQL is measured
        store = bgp.jobs.store
        warm = 200
        ids = [bgp.jobs.enqueue(add, i, i) for i in range(args.n + warm)]
        executions = {job_id: store.get(job_id).execution_id for job_id in ids}
        request = types.SimpleNamespace(is_eager=False, called_directly=False,
                                        hostname="bench@localhost", retries=0)
        task = types.SimpleNamespace(request=request)

        def run(job_id: str) -> None:
            forget = getattr(getattr(store, "_seen", None), "forget", None)
            if forget is not None:
                forget()
            run_job(bgp.jobs, task, job_id, executions[job_id])

        for job_id in ids[:warm]:
            run(job_id)
        with contextlib.suppress(psycopg.Error), psycopg.connect(ADMIN, autocommit=True) as c:
            c.execute("CHECKPOINT")  # not during the measurement (creating the database)
        connections["default"].ensure_connection()
        backends = [psutil.Process(c.connection.info.backend_pid)
                    for c in (kept.connection("default"), connections["default"])]

        def server_cpu() -> float:
            return sum(sum(b.cpu_times()[:2]) for b in backends)

        server0 = server_cpu()
        client0, wall0 = time.process_time(), time.perf_counter()
        for job_id in ids[warm:]:
            run(job_id)
        client = (time.process_time() - client0) / args.n * 1e6
        wall = (time.perf_counter() - wall0) / args.n * 1e3
        server = (server_cpu() - server0) / args.n * 1e6
        binding = ", server-side binding" if args.server_side_binding else ""
        if args.prepare_threshold is not None:
            binding += f", prepare_threshold {args.prepare_threshold}"
        print(f"{ROOT}{binding}: {args.n} jobs, per job: client CPU {client:,.0f} us, "
              f"PostgreSQL CPU {server:,.0f} us, wall {wall:.2f} ms")
        kept.close_all()


if __name__ == "__main__":
    main()
