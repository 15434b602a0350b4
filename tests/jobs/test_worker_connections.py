"""docs/jobs.rst, "Database connections on workers": in a Django project Celery closes
Django's connections after every task; the job engine's own statements run on a
connection the worker keeps, so a job whose code does not use the database opens no
PostgreSQL session, and a connection the server dropped costs one retry, not the job."""
from __future__ import annotations

import uuid

import psutil
import pytest
from django.db import connection

from tests.apps import jobs as J
from tests.conftest import BROKER_DB, failed, stack_env
from tests.helpers.workers import WorkerProcess

from .test_workers import APP, publisher

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

DATABASE_PORT = int(connection.settings_dict.get("PORT") or 5432)


@pytest.fixture
def env(redis_base):
    env = stack_env(f"{redis_base}/{BROKER_DB}", redis_base, f"bgp-conn-{uuid.uuid4().hex[:8]}")
    env["BGP_TEST_ELECTIONS"] = "0"  # the test app's election handlers read through the ORM
    return env


@pytest.fixture
def worker(env, request):
    # The app sets DJANGO_SETTINGS_MODULE before it makes its Celery app: Celery's
    # Django fixup is on, as in any Django project.
    with WorkerProcess(APP, env, [env["BGP_TEST_QUEUE"]], concurrency=2) as running:
        yield running
        if failed(request):
            print(f"--- worker log ---\n{running.log()[-6000:]}")


def worker_database_ports(worker) -> set[int]:
    """Local ports of the worker's processes' connections to PostgreSQL."""
    processes = [psutil.Process(worker.proc.pid)]
    processes += processes[0].children(recursive=True)
    return {c.laddr.port for p in processes for c in p.net_connections(kind="tcp")
            if c.raddr and c.raddr.port == DATABASE_PORT}


def sessions_opened() -> int:
    """Sessions opened on the test database so far (a session that ended has reported)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


def test_jobs_do_not_open_a_database_session_each(env, worker):
    bgp = publisher(env)
    for job_id in [bgp.jobs.enqueue(J.add, i, i) for i in range(4)]:  # both pool processes
        bgp.jobs.wait(job_id)
    before = sessions_opened()
    ids = [bgp.jobs.enqueue(J.add, i, 1) for i in range(30)]
    assert [bgp.jobs.wait(job_id).state for job_id in ids] == ["Succeeded"] * 30
    opened = sessions_opened() - before
    # Each pool process may still open its kept connection (and its heartbeat thread's)
    # if the warm-up missed it; before, every job opened one.
    assert opened <= 6, f"{opened} sessions for 30 jobs"


def test_a_kept_connection_the_server_dropped_costs_a_retry_not_the_job(env, worker):
    bgp = publisher(env)
    for job_id in [bgp.jobs.enqueue(J.add, i, i) for i in range(4)]:
        bgp.jobs.wait(job_id)
    ports = worker_database_ports(worker)
    assert ports, "the worker keeps no connection between jobs"
    with connection.cursor() as cursor:  # the worker's sessions, and only those
        cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND client_port = ANY(%s)",
                       [sorted(ports)])
        assert cursor.fetchone()[0] >= 1
    ids = [bgp.jobs.enqueue(J.add, i, 2) for i in range(6)]
    jobs = [bgp.jobs.wait(job_id, timeout=30) for job_id in ids]
    assert [(job.state, job.result) for job in jobs] == [("Succeeded", i + 2) for i in range(6)]


@pytest.mark.parametrize("options", ["client", "server", "prepared"])
def test_a_job_costs_its_worker_three_round_trips_seen_by_djangos_instrumentation(
        env, options):
    """docs/jobs.rst, "The Django store's writes": the worker reads its job with one
    ``SELECT`` and each of its two transitions is one more round trip, also on an alias
    with ``OPTIONS["server_side_binding"]``, and with ``OPTIONS["prepare_threshold"]``
    (where each write and its continuations read are two prepared statements in one
    pipeline). Counted in a real worker (fixup on) by an execute wrapper that a
    ``connection_created`` receiver adds, as database instrumentation does: the engine's
    own connection is one it sees."""
    import redis

    key = f"bgp-test-sql-{uuid.uuid4().hex}"
    env = {**env, "BGP_TEST_SQL_COUNTER": f"{env['BGP_TEST_BROKER']}#{key}"}
    if options == "server":
        env["BGP_TEST_SERVER_SIDE_BINDING"] = "1"
    if options == "prepared":
        env["BGP_TEST_PREPARE_THRESHOLD"] = "0"
    counts = redis.Redis.from_url(env["BGP_TEST_BROKER"], decode_responses=True)
    try:
        with WorkerProcess(APP, env, [env["BGP_TEST_QUEUE"]], concurrency=2) as running:
            bgp = publisher(env)
            for job_id in [bgp.jobs.enqueue(J.add, i, i) for i in range(4)]:  # warm up
                bgp.jobs.wait(job_id)
            ids = [bgp.jobs.enqueue(J.add, i, 3) for i in range(20)]
            assert [bgp.jobs.wait(job_id).result for job_id in ids] == \
                [i + 3 for i in range(20)], running.log()[-6000:]
        assert counts.hget(key, "server_side_binding") == str(options == "server")
        # The store binds its multi-statement strings on the client whatever Django's
        # cursors do, and its single statements on the server (prepared) where the
        # alias lets psycopg prepare them.
        binding = {f.partition(":")[2] for f in counts.hkeys(key) if f.startswith("binding:")}
        assert binding == ({"server"} if options == "prepared" else {"client"})
        seen = {job_id: int(counts.hget(key, job_id) or 0) for job_id in ids}
        # Prepared, each write and its continuations read are two statements in one
        # pipeline (one round trip): 5 statements, 3 round trips.
        assert seen == dict.fromkeys(ids, 5 if options == "prepared" else 3)
    finally:
        counts.delete(key)
