"""The lease store contract: memory, Django (PostgreSQL) and SQLAlchemy (PostgreSQL,
SQLite), each on real tables; and the declaration API's clear errors."""
from __future__ import annotations

import threading
import time

import pytest
from celery import Celery

from celery_bgp import BackgroundProcessing, ImproperlyConfigured
from celery_bgp.commands import utcnow
from celery_bgp.daemons import DaemonNotFound, DaemonRecord
from celery_bgp.daemons.memory import MemoryDaemonStore
from celery_bgp.daemons.runner import Runner
from celery_bgp.jobs.invocation import JobNotAllowed
from celery_bgp.jobs.model import LogRecord
from tests.apps import daemon_fns
from tests.helpers.databases import close_connections_at_thread_end
from tests.helpers.sqlalchemy_databases import MigratedDatabases


@pytest.fixture(scope="module")
def sa_databases():
    databases = MigratedDatabases()
    yield databases
    databases.close()


def _django(request):
    from celery_bgp.contrib.django.daemon_store import DjangoDaemonStore

    close_connections_at_thread_end(request.getfixturevalue("monkeypatch"))
    return DjangoDaemonStore("default")


def _sqlalchemy(kind):
    def make(request):
        from celery_bgp.contrib.sqlalchemy import SQLAlchemyJobStore
        from celery_bgp.daemons import daemon_store_for

        url = request.getfixturevalue("sa_databases").url(kind)
        return daemon_store_for(SQLAlchemyJobStore(url))

    return make


STORES = {"memory": lambda request: MemoryDaemonStore(), "django": _django,
          "sqlalchemy-postgresql": _sqlalchemy("postgresql"),
          "sqlalchemy-sqlite": _sqlalchemy("sqlite")}


@pytest.fixture(params=[pytest.param(name, marks=pytest.mark.django_db(transaction=True))
                        if name == "django" else name for name in sorted(STORES)])
def store(request):
    return STORES[request.param](request)


def test_a_lease_has_one_holder_until_it_expires(store):
    row = store.ensure(DaemonRecord("env:d", "d", "env", "cluster"))
    assert (row.status, row.desired, row.generation, row.properties) == ("stopped", "running",
                                                                         0, {})
    assert store.ensure(DaemonRecord("env:d", "d", "env", "worker")).scope == "cluster"
    assert store.acquire("env:d", "a", 0.5).lease_holder == "a"
    assert store.acquire("env:d", "b", 0.5) is None
    assert store.renew("env:d", "b", 0.5) is None
    assert store.renew("env:d", "a", 0.5) is not None
    assert store.update("env:d", {"status": "running"}, holder="b") is False
    assert store.update("env:d", {"status": "running", "state": {"n": 1}}, holder="a")
    time.sleep(0.7)
    taken = store.acquire("env:d", "b", 5)
    assert (taken.lease_holder, taken.status, taken.state) == ("b", "running", {"n": 1})
    assert store.renew("env:d", "a", 5) is None
    steered = store.steer("env:d", "stopped", True)
    assert (steered.desired, steered.generation) == ("stopped", 1)
    assert store.steer("env:nope", "stopped", True) is None


def test_racing_workers_never_both_take_a_lease(store):
    store.ensure(DaemonRecord("env:race", "race", "env", "cluster"))
    winners, start = [], threading.Barrier(6)

    def take(n):
        start.wait()
        if store.acquire("env:race", f"w{n}", 30):
            winners.append(n)

    threads = [threading.Thread(target=take, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1


def test_rows_and_logs_are_listed_per_environment(store):
    store.ensure(DaemonRecord("e1:b", "b", "e1", "worker"))
    store.ensure(DaemonRecord("e1:b@w1", "b", "e1", "worker", instance="w1"))
    store.ensure(DaemonRecord("e1:a", "a", "e1", "cluster"))
    store.ensure(DaemonRecord("e2:a", "a", "e2", "cluster"))
    assert [(r.name, r.instance) for r in store.search("e1")] == [("a", ""), ("b", ""),
                                                                  ("b", "w1")]
    assert [r.id for r in store.search("e1", "b")] == ["e1:b", "e1:b@w1"]
    for n in range(3):
        store.add_log("e1", "a", "w1", LogRecord(20, f"line {n}", utcnow()))
    assert [(w, r.message) for w, r in store.logs("e1", "a", limit=2)] == [
        ("w1", "line 2"), ("w1", "line 1")]
    assert store.logs("e2", "a") == []


def memory_bgp(**options) -> BackgroundProcessing:
    app = Celery("daemon-unit", set_as_current=False)
    return BackgroundProcessing(app, job_store="memory://daemon-unit",
                                job_modules=["tests.apps"], **options)


def test_bad_declarations_fail_clearly():
    bgp = memory_bgp()
    with pytest.raises(ImproperlyConfigured, match="unknown restart policy 'sometimes'"):
        bgp.daemon("a", daemon_fns.waits, restart="sometimes")
    with pytest.raises(ImproperlyConfigured, match="unknown daemon scope 'planet'"):
        bgp.daemon("a", daemon_fns.waits, scope="planet")
    with pytest.raises(ImproperlyConfigured, match="daemon name"):
        bgp.daemon("a b", daemon_fns.waits)
    with pytest.raises(JobNotAllowed):
        bgp.daemon("a", time.sleep)  # not defined in an allowed module
    with pytest.raises(JobNotAllowed):
        bgp.daemon("a", "os:system")
    with pytest.raises(ImproperlyConfigured, match="backoff"):
        bgp.daemon("a", daemon_fns.waits, backoff=(5, 1))
    with pytest.raises(DaemonNotFound, match="no daemon 'nope' is declared"):
        bgp.daemons.stop("nope")

    with pytest.raises(ImproperlyConfigured, match="defined inside a function"):
        @bgp.daemon("decorated", scope="worker")
        def local(ctx):  # a worker could not import it
            pass


def test_the_decorator_declares_and_returns_the_function():
    bgp = memory_bgp()
    assert bgp.daemon("w", restart="always")(daemon_fns.waits) is daemon_fns.waits
    spec = bgp.daemons.spec("w")
    assert (spec.fn, spec.restart.value, spec.scope.value) == (
        "tests.apps.daemon_fns:waits", "always", "cluster")
    assert [r.status for r in bgp.daemons.all()] == ["stopped"]  # declared, never run


def test_an_in_process_runner_keeps_state_and_stops_on_shutdown(monkeypatch, redis_base):
    monkeypatch.setenv("BGP_TEST_SINK", f"{redis_base}/13")
    bgp = memory_bgp(job_lock_timeout=1.0)
    bgp.daemon("t", daemon_fns.ticker)
    runner = Runner(bgp.daemons, "here", {"celery"})
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while (bgp.daemons.get("t").state or {}).get("ticks", 0) < 20:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert bgp.daemons.get("t").status == "running"
    finally:
        runner.stop()
    row = bgp.daemons.get("t")
    assert (row.status, row.lease_holder) == ("stopped", None)
    assert any("ticking" in r.message for _, r in bgp.daemons.logs("t"))


def test_worker_daemon_copies_of_gone_workers_are_forgotten(monkeypatch, redis_base):
    monkeypatch.setenv("BGP_TEST_SINK", f"{redis_base}/13")
    bgp = memory_bgp(job_lock_timeout=1.0)
    bgp.daemon("everywhere", daemon_fns.returns, scope="worker", restart="none")
    first, second = (Runner(bgp.daemons, name, {"celery"}) for name in ("w1", "w2"))
    first.start()
    second.start()
    try:
        deadline = time.monotonic() + 10
        while len(bgp.daemons.copies("everywhere")) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        first.stop()  # a warm shutdown releases w1's copy; w2 forgets it
        while [c.instance for c in bgp.daemons.copies("everywhere")] != ["w2"]:
            assert time.monotonic() < deadline + 5
            time.sleep(0.05)
        assert bgp.daemons.get("everywhere").worker == "0 of 1 workers"  # it returned
    finally:
        second.stop()


def test_an_async_daemon_runs_and_stops():
    bgp = memory_bgp(job_lock_timeout=1.0)
    bgp.daemon("async-one", daemon_fns.waits_async)
    with bgp.daemons.running(worker="here"):
        deadline = time.monotonic() + 10
        while bgp.daemons.get("async-one").state != {"async": True}:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert bgp.daemons.get("async-one").status == "running"
    assert bgp.daemons.get("async-one").status == "stopped"
