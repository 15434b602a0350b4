"""Tracked jobs against plain Celery + django-celery-results and procrastinate, on PostgreSQL.

    python benchmarks/jobs.py [-n 5000] [--rounds 2] [--store db+postgresql://...]
                              [--db NAME] [--no-procrastinate] [--no-django-fixup]
                              [--prepare-threshold N]

In one run, on one PostgreSQL database (``--db``, default ``bgp_bench_throughput``,
dropped and made anew; give the benchmark a name of its own), rounds alternate:

- plain Celery: N ``@app.task`` calls with ``result_backend="django-db"`` and
  ``result_extended=True`` (what a Django user has today to see tasks in the admin),
  one worker (prefork, concurrency 2) on Redis;
- celery-bgp jobs: N ``bgp.jobs.enqueue`` with the Django job store, the same worker;
- procrastinate (a PostgreSQL-backed queue that keeps each job's status in a table):
  N ``defer`` of the same no-op (an ``async`` task), two workers of concurrency 2
  (``pip install procrastinate``; ``--no-procrastinate`` skips it);
- the floor: N calls of a plain task that stores no result (one Redis ``INCR`` counts
  it), on the same worker: what Celery itself costs per message, which neither of the
  Celery rows can go below.

The Celery worker runs as in a Django project: ``DJANGO_SETTINGS_MODULE`` is set, so
Celery's Django fixup closes Django's connections after each task (as it does for every
Django user); ``--no-django-fixup`` runs it as a plain Celery app that configures Django
itself, where connections stay open.

Per system: throughput (N / first send -> last completion), the enqueue call's latency
(p50, p99; the workers run meanwhile), PostgreSQL CPU per job (the CPU of the server
processes serving the benchmark database, and of those that ended meanwhile, from first
send to last completion), the share of its table's row updates that were HOT
(``n_tup_hot_upd`` / ``n_tup_upd``), the PostgreSQL sessions opened per job, and for
celery-bgp the SQL round trips one job costs each store. A second table splits the CPU
per job between the enqueue loop (this process), the workers (parents and children),
the broker's redis-server and PostgreSQL: on a machine with few cores, throughput is
bounded by their sum.

``--store db+postgresql://...`` adds the SQLAlchemy job store on that database (its
tables are created or upgraded, nothing is dropped). The broker is the benchmark's own
redis-server (benchmarks/private_redis.py) unless ``BGP_BENCH_BROKER`` names one: a
Redis database of yours is never flushed.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks import private_redis  # noqa: E402  (before the app reads its URLs)


def _prepare_option() -> None:
    """``--prepare-threshold`` is read before Django is configured, as ``--db`` is."""
    for i, arg in enumerate(sys.argv):
        if arg == "--prepare-threshold" and i + 1 < len(sys.argv):
            os.environ["BGP_BENCH_PREPARE_THRESHOLD"] = sys.argv[i + 1]


def _database_option() -> str:
    """``--db`` is read before Django is configured (benchmarks.jobs_app reads it)."""
    for i, arg in enumerate(sys.argv):
        if arg == "--db" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if arg.startswith("--db="):
            return arg.split("=", 1)[1]
    return os.environ.get("BGP_BENCH_DB", "bgp_bench_throughput")


DB = os.environ["BGP_BENCH_DB"] = _database_option()  # dropped and made anew
_prepare_option()
ADMIN = "host=127.0.0.1 user=postgres dbname=postgres"


def reset_database() -> None:
    import psycopg

    with psycopg.connect(ADMIN, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{DB}"')


class PgMeter:
    """CPU of the server processes serving the benchmark database, and update counters."""

    def __init__(self) -> None:
        import psycopg

        self.admin = psycopg.connect(ADMIN, autocommit=True)
        self.db = psycopg.connect(f"host=127.0.0.1 user=postgres dbname={DB}", autocommit=True)

    def cpu(self) -> float:
        """CPU seconds of the live server processes on the benchmark database, plus
        those of every server process that has ended (a session per task, as Celery's
        Django fixup makes: the postmaster's reaped children, whatever their database,
        so keep the server otherwise quiet)."""
        import psutil

        own = self.db.execute("SELECT pg_backend_pid()").fetchone()[0]  # counts progress
        pids = [pid for (pid,) in self.admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> %s", [DB, own])]
        total = 0.0
        for pid in pids:
            with contextlib.suppress(psutil.Error):  # a backend that has just ended
                total += sum(psutil.Process(pid).cpu_times()[:2])
        ended = psutil.Process(psutil.Process(own).ppid()).cpu_times()
        return total + ended.children_user + ended.children_system

    def sessions(self) -> int:
        """Sessions opened on the benchmark database so far (as reported: a session
        reports at its end, or within a second of its last transaction)."""
        self.db.execute("SELECT pg_stat_clear_snapshot()")
        return self.db.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s",
                               [DB]).fetchone()[0]

    def count(self, sql: str) -> int:
        """A progress count, on this meter's connection (not counted as the system's CPU)."""
        return self.db.execute(sql).fetchone()[0]

    def updates(self, table: str) -> tuple[int, int]:
        """(n_tup_upd, n_tup_hot_upd) of ``table`` as reported so far (an idle backend
        reports within 10 s: wait for it with :meth:`settle`)."""
        row = self.db.execute("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                              "WHERE relname = %s", [table]).fetchone()
        return (row[0], row[1]) if row else (0, 0)

    @staticmethod
    def settle() -> None:
        """Let idle server processes report their table counters (PostgreSQL: 10 s), and
        this process's Django connection at once."""
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_force_next_flush()")
            cursor.execute("SELECT 1")
        time.sleep(11)


@dataclass
class Run:
    rate: float
    p50_ms: float
    p99_ms: float
    pg_cpu_us: float
    sessions: float  # PostgreSQL sessions opened per job
    client_cpu_us: float = 0.0  # this process (the enqueue loop), per job
    worker_cpu_us: float = 0.0  # the workers' processes (parents and children), per job
    redis_cpu_us: float = 0.0  # the broker's redis-server, per job


class ProcessMeter:
    """CPU seconds of whole process trees (the workers, the broker) and of this process."""

    def __init__(self) -> None:
        self.roots: dict[str, list[int]] = {"worker": [], "redis": [], "procrastinate": []}

    def watch(self, kind: str, pid: int) -> None:
        self.roots[kind].append(pid)

    def cpu(self, kind: str) -> float:
        if kind == "client":
            return time.process_time()
        import psutil

        total = 0.0
        for root in self.roots[kind]:
            with contextlib.suppress(psutil.Error):
                parent = psutil.Process(root)
                for proc in (parent, *parent.children(recursive=True)):
                    with contextlib.suppress(psutil.Error):
                        total += sum(proc.cpu_times()[:2])
        return total

    def snapshot(self) -> dict[str, float]:
        """Workers: Celery's, plus procrastinate's (only one of them runs a round)."""
        return {"client": self.cpu("client"),
                "worker": self.cpu("worker") + self.cpu("procrastinate"),
                "redis": self.cpu("redis")}


PROCESSES = ProcessMeter()


TABLES = {"plain": "django_celery_results_taskresult", "jobs": "celery_bgp_job",
          "procrastinate": "procrastinate_jobs", "floor": None}


def timed_round(meter: PgMeter, n: int, send, count_done) -> Run:
    """Send N jobs with ``send(i)`` (each call timed) and wait until ``count_done()``."""
    time.sleep(1.5)  # sessions of the round before have reported
    cpu0, sessions0, own0 = meter.cpu(), meter.sessions(), PROCESSES.snapshot()
    latencies = []
    start = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        send(i)
        latencies.append(time.perf_counter() - t)
    wait(count_done, n)
    elapsed = time.perf_counter() - start
    cpu1, own1 = meter.cpu(), PROCESSES.snapshot()
    time.sleep(1.5)
    sessions = meter.sessions() - sessions0
    latencies.sort()
    return Run(n / elapsed, latencies[len(latencies) // 2] * 1e3,
               latencies[int(len(latencies) * 0.99)] * 1e3, (cpu1 - cpu0) / n * 1e6,
               sessions / n, *((own1[k] - own0[k]) / n * 1e6
                               for k in ("client", "worker", "redis")))


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
    parser.add_argument("--db", default=DB, help="PostgreSQL database (dropped, made anew)")
    parser.add_argument("--no-procrastinate", action="store_true")
    parser.add_argument("--concurrency", type=int, default=2,
                        help="the Celery worker's prefork children (default 2, one per core "
                             "here; procrastinate runs 2 workers of concurrency 2)")
    parser.add_argument("--prepare-threshold", type=int, metavar="N",
                        help="Django's OPTIONS[\"prepare_threshold\"] on the alias: the "
                             "job store's worker statements are prepared")
    parser.add_argument("--no-django-fixup", action="store_true",
                        help="run the Celery worker without DJANGO_SETTINGS_MODULE, so "
                             "Celery's Django fixup does not close connections after tasks")
    args = parser.parse_args()
    reset_database()
    from django.core.management import call_command

    from benchmarks.jobs_app import add, app, bgp, floor_add, plain_add
    from tests.helpers.workers import WorkerProcess

    call_command("migrate", verbosity=0)
    import redis
    from django_celery_results.models import TaskResult

    if private_redis.OWNED:  # never empty a database of a Redis you pointed us at
        redis.Redis.from_url(app.conf.broker_url).flushdb()
    procrastinate = None if args.no_procrastinate else Procrastinate()
    meter = PgMeter()
    runs: dict[str, list[Run]] = {"plain": [], "jobs": [], "procrastinate": [], "floor": []}
    counter = redis.Redis.from_url(os.environ["BGP_BENCH_COUNTER"])
    counter.delete("bgp-bench-floor")  # the benchmark's own key
    counters = {name: meter.updates(table) for name, table in TABLES.items() if table}
    worker_env = {"BGP_BENCH_DB": DB}
    if args.prepare_threshold is not None:
        worker_env["BGP_BENCH_PREPARE_THRESHOLD"] = str(args.prepare_threshold)
    if not args.no_django_fixup:  # as in a Django project (the app configures Django)
        worker_env["DJANGO_SETTINGS_MODULE"] = "benchmarks.jobs_app"
    import psutil

    for child in psutil.Process().children():  # the benchmark's own redis-server
        if child.name().startswith("redis-server"):
            PROCESSES.watch("redis", child.pid)
    if procrastinate is not None:
        for proc in procrastinate.workers:
            PROCESSES.watch("procrastinate", proc.pid)
    with WorkerProcess("benchmarks.jobs_app", worker_env, ["bench-jobs"],
                       concurrency=args.concurrency) as worker:
        PROCESSES.watch("worker", worker.proc.pid)
        for _ in range(args.rounds):
            TaskResult.objects.all().delete()
            runs["plain"].append(timed_round(
                meter, args.n, lambda i: plain_add.delay(i, i),
                lambda: meter.count("SELECT count(*) FROM django_celery_results_taskresult "
                                    "WHERE status = 'SUCCESS'")))
            done = "SELECT count(*) FROM celery_bgp_job WHERE state = 'Succeeded'"
            before = meter.count(done)
            runs["jobs"].append(timed_round(
                meter, args.n, lambda i: bgp.jobs.enqueue(add, i, i),
                lambda b=before, d=done: meter.count(d) - b))
            if procrastinate is not None:
                runs["procrastinate"].append(procrastinate.round(meter, args.n))
            before = int(counter.get("bgp-bench-floor") or 0)
            runs["floor"].append(timed_round(
                meter, args.n, lambda i: floor_add.delay(i, i),
                lambda b=before: int(counter.get("bgp-bench-floor") or 0) - b))
    counter.delete("bgp-bench-floor")
    meter.settle()
    hot = {}
    for name, table in TABLES.items():
        if table is None:
            hot[name] = "-"
            continue
        (upd0, hot0), (upd1, hot1) = counters[name], meter.updates(table)
        hot[name] = f"{(hot1 - hot0) / (upd1 - upd0):.0%}" if upd1 > upd0 else "no upd"
    if procrastinate is not None:
        procrastinate.stop()
    med = {name: Run(*(statistics.median(getattr(r, f) for r in rows)
                       for f in Run.__dataclass_fields__))
           for name, rows in runs.items() if rows}
    fixup = "off" if args.no_django_fixup else "on (DJANGO_SETTINGS_MODULE set)"
    print(f"\nN={args.n}, {args.rounds} rounds, median; Celery: worker prefork "
          f"-c {args.concurrency}, Redis, "
          f"Django fixup {fixup}; procrastinate: 2 workers -c 2; one PostgreSQL database"
          + ("" if args.prepare_threshold is None
             else f"; OPTIONS prepare_threshold {args.prepare_threshold}"))
    header = (f"{'':34}{'jobs/s':>8}{'x plain':>9}{'enqueue p50':>13}{'p99':>8}"
              f"{'PG CPU/job':>12}{'HOT upd':>9}{'sessions/job':>14}")
    print(header)
    labels = {"plain": "plain Celery + django-db results", "jobs": "celery-bgp jobs, Django",
              "procrastinate": "procrastinate", "floor": "plain Celery, no result (floor)"}
    for name, run in med.items():
        print(f"{labels[name]:34}{run.rate:>8,.0f}{run.rate / med['plain'].rate:>9.2f}"
              f"{run.p50_ms:>10.2f} ms{run.p99_ms:>8.2f}{run.pg_cpu_us:>9,.0f} us"
              f"{hot[name]:>9}{run.sessions:>14.2f}")
    print(f"\nCPU per job, us{'':19}{'enqueuer':>9}{'workers':>9}{'Redis':>8}{'PG':>8}"
          f"{'total':>8}")
    for name, run in med.items():
        total = run.client_cpu_us + run.worker_cpu_us + run.redis_cpu_us + run.pg_cpu_us
        print(f"{labels[name]:34}{run.client_cpu_us:>9,.0f}{run.worker_cpu_us:>9,.0f}"
              f"{run.redis_cpu_us:>8,.0f}{run.pg_cpu_us:>8,.0f}{total:>8,.0f}")
    jobs = med["jobs"]
    print(f"\ncelery-bgp jobs / plain Celery: throughput {jobs.rate / med['plain'].rate:.2f}, "
          f"enqueue p50 {jobs.p50_ms / med['plain'].p50_ms:.2f}x, "
          f"PG CPU per job {jobs.pg_cpu_us / med['plain'].pg_cpu_us:.2f}x")
    if "procrastinate" in med:
        print(f"celery-bgp jobs / procrastinate: throughput "
              f"{jobs.rate / med['procrastinate'].rate:.2f}")
    updates, hot = heartbeats(bgp, meter)
    print(f"heartbeats (a running job's lock renewals), Django store: {hot} of {updates} "
          f"row updates HOT ({hot / max(updates, 1):.0%})")
    trips = [("Django store", round_trips(bgp))]
    if args.store:
        from benchmarks.jobs_app import publisher

        rate = sqlalchemy_rate(args)
        print(f"celery-bgp jobs, SQLAlchemy store: {rate:,.0f} jobs/s, "
              f"{rate / med['plain'].rate:.2f} of plain Celery")
        trips.append(("SQLAlchemy store", round_trips(publisher(args.store))))
    for label, (create, worker) in trips:
        print(f"SQL round trips per job, {label}: {create} to create + {worker} in the worker")


class Procrastinate:
    """procrastinate's schema, its workers, and a publisher, on the benchmark database."""

    def __init__(self) -> None:
        from benchmarks import procrastinate_app

        self.app = procrastinate_app.app
        self.app.open()
        self.app.schema_manager.apply_schema()
        env = {**os.environ, "BGP_BENCH_DB": DB, "BGP_BENCH_PROCRASTINATE_WORKER": "1",
               "PYTHONPATH": str(ROOT)}
        self.workers = [subprocess.Popen(
            [sys.executable, "-m", "procrastinate", "--app", "benchmarks.procrastinate_app.app",
             "worker", "--queues", "bench-jobs", "--concurrency", "2",
             "--delete-jobs", "never"],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(2)]
        self.done = 0

    def round(self, meter: PgMeter, n: int) -> Run:
        from benchmarks.procrastinate_app import add

        done = "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
        before = meter.count(done)
        return timed_round(meter, n, lambda i: add.defer(a=i, b=i),
                           lambda: meter.count(done) - before)

    def stop(self) -> None:
        for worker in self.workers:
            worker.terminate()
        for worker in self.workers:
            worker.wait(30)
        self.app.close()


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


def heartbeats(bgp, meter: PgMeter, jobs: int = 20, beats: int = 10) -> tuple[int, int]:
    """Row updates and HOT updates of ``jobs`` locked jobs renewing their lock ``beats``
    times each (what a long job's heartbeat thread does every lock timeout / 3)."""
    from benchmarks.jobs_app import add

    bgp.jobs._publish = lambda job, when: None  # held, never run: only the lock moves
    ids = [bgp.jobs.enqueue(add, i, i) for i in range(jobs)]
    for job_id in ids:
        bgp.jobs.store.acquire_lock(job_id, "bench-heartbeat", 60)
    meter.settle()
    before = meter.updates("celery_bgp_job")
    for _ in range(beats):
        for job_id in ids:
            bgp.jobs.store.heartbeat(job_id, "bench-heartbeat", 60)
    meter.settle()
    after = meter.updates("celery_bgp_job")
    del bgp.jobs._publish
    return after[0] - before[0], after[1] - before[1]


def round_trips(bgp) -> tuple[int, int]:
    """SQL round trips one job costs: its creation, then what a worker does (read,
    Executing with the lock, the final state releasing it). Each psycopg statement
    string is one (the hot paths run in autocommit, BEGIN and COMMIT inside the
    strings), and so is each psycopg pipeline (prepared statements sent together)."""
    import contextlib

    import psycopg

    from benchmarks.jobs_app import add
    from celery_bgp.jobs.states import Executing, Succeeded

    bgp.jobs.store.get("warm-up")  # connect (and let the driver introspect) first
    sent, piped = [0], [0]
    originals = {cls: cls.execute for cls in (psycopg.Cursor, psycopg.ClientCursor)}
    pipeline = psycopg.Connection.pipeline

    def counting(original):
        def execute(self, *a, **kw):
            sent[0] += not piped[0]
            return original(self, *a, **kw)
        return execute

    @contextlib.contextmanager
    def one_trip(self):
        sent[0] += 1
        piped[0] += 1
        try:
            with pipeline(self) as done:
                yield done
        finally:
            piped[0] -= 1

    for cls, original in originals.items():
        cls.execute = counting(original)
    psycopg.Connection.pipeline = one_trip
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
        psycopg.Connection.pipeline = pipeline


if __name__ == "__main__":
    main()
