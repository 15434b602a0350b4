"""Jobs through real ``celery worker`` processes, Redis and RabbitMQ, and the Django
store on PostgreSQL: priorities, delays, continuations under a race, transactions,
a worker killed mid-job, the veto, and commands tracked as jobs."""
from __future__ import annotations

import threading
import time
import uuid

import pytest
from celery import Celery
from django.db import connections, transaction

from celery_bgp import BackgroundProcessing, Priority
from celery_bgp.priority import REDIS_PRIORITY_STEPS
from tests.apps import jobs as J
from tests.apps.commands import Echo, Fail
from tests.conftest import BROKER_DB, failed, stack_env
from tests.helpers.workers import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

APP = "tests.apps.jobs_worker_app"


def publisher(env: dict[str, str]) -> BackgroundProcessing:
    app = Celery(f"jobs-pub-{uuid.uuid4().hex[:6]}", set_as_current=False)
    app.conf.update(
        broker_url=env["BGP_TEST_BROKER"], result_backend=env["BGP_TEST_BACKEND"],
        task_default_queue=env["BGP_TEST_QUEUE"], task_queue_max_priority=10,
        broker_transport_options={"priority_steps": REDIS_PRIORITY_STEPS,
                                  "queue_order_strategy": "priority"},
    )
    return BackgroundProcessing(app, name="default", job_store="django://",
                                job_modules=["tests.apps"], job_retry={"max_attempts": 1},
                                event_repository=env["BGP_TEST_EVENTS"])


@pytest.fixture(params=["redis", "amqp"])
def broker_url(request, redis_base):
    if request.param == "redis":
        return f"{redis_base}/{BROKER_DB}"
    return request.getfixturevalue("amqp_url")


@pytest.fixture
def env(broker_url, redis_base):
    return stack_env(broker_url, redis_base, f"bgp-jobs-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def worker(env, request):
    with WorkerProcess(APP, env, [env["BGP_TEST_QUEUE"]]) as running:
        yield running
        if failed(request):
            print(f"--- worker log ---\n{running.log()[-6000:]}")


def test_a_job_runs_on_a_real_worker(env, worker):
    bgp = publisher(env)
    job_id = bgp.jobs.enqueue(J.add, 20, 22)
    job = bgp.jobs.wait(job_id)
    assert (job.state, job.result) == ("Succeeded", 42)
    assert job.worker == worker.hostname
    assert [s.name for s in bgp.jobs.history(job_id)] == [
        "Created", "Enqueued", "Executing", "Succeeded"]


def test_a_backlog_drains_in_priority_order(env, sink):
    bgp = publisher(env)
    key = f"prio-{uuid.uuid4().hex}"
    order = [Priority.LOW, Priority.NONE, Priority.NORMAL, Priority.CRITICAL, Priority.HIGH,
             Priority.LOW, Priority.CRITICAL, Priority.NORMAL]
    for i, level in enumerate(order):
        bgp.jobs.submit(J.record, args=[key, f"{level.value}-{i}"], priority=level)
    with WorkerProcess(APP, env, [env["BGP_TEST_QUEUE"]], concurrency=1):
        deadline = time.monotonic() + 30
        while sink.llen(key) < len(order):
            assert time.monotonic() < deadline, sink.lrange(key, 0, -1)
            time.sleep(0.1)
    ran = [int(item.split("-")[0]) for item in sink.lrange(key, 0, -1)]
    assert ran == sorted(ran), ran


def test_delayed_job_waits(env, worker):
    bgp = publisher(env)
    started = time.monotonic()
    job_id = bgp.jobs.submit(J.add, args=[1, 1], delay=2)
    assert bgp.jobs.get(job_id).state == "Enqueued"
    bgp.jobs.wait(job_id)
    assert time.monotonic() - started >= 1.9


def test_continuations_attached_while_the_parent_finishes_all_run_once(env, worker, sink):
    bgp = publisher(env)
    key = f"cont-{uuid.uuid4().hex}"
    parent = bgp.jobs.enqueue(J.sleep_plain, 0.3)
    children: list[str] = []
    start = threading.Barrier(8)

    def attach(n):
        start.wait()
        time.sleep(n * 0.05)  # spread over the parent's run and its end
        try:
            children.append(bgp.jobs.submit(J.record, args=[key, str(n)],
                                            after=(parent, "succeeded")))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=attach, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for child in children:
        assert bgp.jobs.wait(child).state == "Succeeded"
    assert sorted(sink.lrange(key, 0, -1)) == [str(n) for n in range(8)]


def test_transaction_rollback_sends_nothing_and_commit_sends_once(env, worker, sink):
    bgp = publisher(env)
    key = f"tx-{uuid.uuid4().hex}"
    with pytest.raises(RuntimeError), transaction.atomic():
        rolled_back = bgp.jobs.submit(J.record, args=[key, "rolled back"])
        raise RuntimeError("rollback")
    with transaction.atomic():
        committed = bgp.jobs.submit(J.record, args=[key, "committed"])
        time.sleep(0.5)
        assert sink.lrange(key, 0, -1) == []  # not sent before the commit
    assert bgp.jobs.wait(committed).state == "Succeeded"
    time.sleep(0.5)
    assert bgp.jobs.get(rolled_back) is None
    assert sink.lrange(key, 0, -1) == ["committed"]


def test_a_job_whose_worker_is_killed_is_recovered(env, sink):
    bgp = publisher(env)
    key = f"kill-{uuid.uuid4().hex}"
    fast = {**env, "BGP_TEST_LOCK_TIMEOUT": "3", "BGP_TEST_MONITOR_INTERVAL": "1"}
    victim = WorkerProcess(APP, fast, [env["BGP_TEST_QUEUE"]]).start()
    job_id = bgp.jobs.submit(J.slow_first_time, args=[key, 60])
    bgp.jobs.wait(job_id, states=["Executing"])
    deadline = time.monotonic() + 30
    while sink.get(key) != "1":  # the callable itself has started
        assert time.monotonic() < deadline
        time.sleep(0.05)
    victim.kill()
    with WorkerProcess(APP, fast, [env["BGP_TEST_QUEUE"]]) as rescuer:
        try:
            job = bgp.jobs.wait(job_id, timeout=60)
        except TimeoutError:
            print(f"--- rescuer log ---\n{rescuer.log()[-6000:]}")
            raise
    assert (job.state, job.result) == ("Succeeded", 2)
    requeued = [s for s in bgp.jobs.history(job_id) if s.name == "Enqueued"][-1]
    assert requeued.reason.startswith("worker lost")


def test_the_tenant_veto_runs_in_the_worker(env, worker):
    bgp = publisher(env)
    blocked = bgp.jobs.submit(J.add, args=[1, 1], properties={"tenant": "blocked"})
    allowed = bgp.jobs.submit(J.add, args=[1, 1], properties={"tenant": "fine"})
    assert bgp.jobs.wait(blocked).state == "Deleted"
    assert bgp.jobs.history(blocked)[-1].reason == "tenant is blocked"
    assert bgp.jobs.wait(allowed).state == "Succeeded"


def test_cancel_a_running_job(env, worker):
    bgp = publisher(env)
    job_id = bgp.jobs.enqueue(J.slow, 30)
    bgp.jobs.wait(job_id, states=["Executing"])
    bgp.jobs.cancel(job_id)
    job = bgp.jobs.wait(job_id, timeout=60)
    assert job.state == "Cancelled"


def test_dispatched_commands_are_tracked_as_jobs_and_can_be_requeued(env, worker):
    bgp = publisher(env)
    ok, bad = Echo(text="tracked"), Fail(message="tracked failure")
    bgp.dispatch(ok)
    bgp.dispatch(bad)
    assert bgp.jobs.wait(ok.id).state == "Succeeded"
    assert bgp.jobs.wait(bad.id).state == "Failed"
    job = bgp.jobs.get(ok.id)
    assert (job.kind.value, job.name) == ("command", "tests.apps.commands.Echo")
    assert job.args[0]["text"] == "tracked"
    assert [s.name for s in bgp.jobs.history(ok.id)][-1] == "Succeeded"
    bgp.jobs.requeue(bad.id)
    deadline = time.monotonic() + 30
    while sum(s.name == "Failed" for s in bgp.jobs.history(bad.id)) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert bgp.jobs.get(bad.id).state == "Failed"
    latest = bgp.events.latest(bad.id)
    assert latest.requeues == 1 and latest.status.value == "ERROR"
