"""Jobs through real ``celery worker`` processes on the SQLAlchemy store, no Django in the
worker: ``job_store="db+postgresql://..."`` and ``"db+sqlite:///<tmp>/jobs.db"``, Redis
as the broker. A job runs, a continuation, a retry, a worker killed mid-job recovered.
"""
from __future__ import annotations

import time
import uuid

import pytest
from celery import Celery

from celery_bgp import BackgroundProcessing
from celery_bgp.contrib.sqlalchemy.migrate import upgrade
from tests.apps import jobs as J
from tests.conftest import BROKER_DB, failed, stack_env
from tests.helpers.sqlalchemy_databases import require, temporary_database
from tests.helpers.workers import WorkerProcess

pytestmark = pytest.mark.integration

APP = "tests.apps.sa_jobs_worker_app"


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def store_url(request):
    require(request.param)
    with temporary_database(request.param, "bgp_saw") as url:
        upgrade(url)
        yield f"db+{url}"


@pytest.fixture
def env(store_url, redis_base):
    env = stack_env(f"{redis_base}/{BROKER_DB}", redis_base, f"bgp-sa-{uuid.uuid4().hex[:8]}")
    # No Django: Celery's Django fixup stays off without a settings module.
    return {**env, "BGP_TEST_JOB_STORE": store_url, "DJANGO_SETTINGS_MODULE": ""}


def publisher(env: dict[str, str], **options) -> BackgroundProcessing:
    app = Celery(f"sa-pub-{uuid.uuid4().hex[:6]}", set_as_current=False)
    app.conf.update(broker_url=env["BGP_TEST_BROKER"], task_default_queue=env["BGP_TEST_QUEUE"])
    options.setdefault("job_retry", {"max_attempts": 1})
    return BackgroundProcessing(app, name="default", job_store=env["BGP_TEST_JOB_STORE"],
                                job_modules=["tests.apps"], event_repository="memory://",
                                **options)


@pytest.fixture
def worker(env, request):
    with WorkerProcess(APP, env, [env["BGP_TEST_QUEUE"]]) as running:
        yield running
        if failed(request):
            print(f"--- worker log ---\n{running.log()[-6000:]}")


def test_a_job_runs_on_a_worker_without_django(env, worker):
    bgp = publisher(env)
    job_id = bgp.jobs.enqueue(J.add, 20, 22)
    job = bgp.jobs.wait(job_id)
    assert (job.state, job.result, job.worker) == ("Succeeded", 42, worker.hostname)
    assert [s.name for s in bgp.jobs.history(job_id)] == [
        "Created", "Enqueued", "Executing", "Succeeded"]
    # (kombu imports django.utils when Django is installed; the ORM is another matter)
    probe = bgp.jobs.enqueue(J.imported, "django.db")
    assert bgp.jobs.wait(probe).result is False  # the worker never loaded Django's ORM


def test_a_continuation_runs_after_its_parent(env, worker, sink):
    bgp = publisher(env)
    key = f"sa-cont-{uuid.uuid4().hex}"
    parent = bgp.jobs.enqueue(J.sleep_plain, 0.3)
    child = bgp.jobs.submit(J.record, args=[key, "child"], after=(parent, "succeeded"))
    late = bgp.jobs.submit(J.record, args=[key, "late"], after=(parent, "succeeded"))
    assert bgp.jobs.wait(parent).state == "Succeeded"
    assert bgp.jobs.wait(child).state == bgp.jobs.wait(late).state == "Succeeded"
    assert sorted(sink.lrange(key, 0, -1)) == ["child", "late"]
    assert [s.name for s in bgp.jobs.history(child)][:3] == ["Created", "Awaiting", "Enqueued"]


def test_a_failing_job_is_retried(env, worker):
    bgp = publisher(env)
    key = f"sa-retry-{uuid.uuid4().hex}"
    job_id = bgp.jobs.submit(J.fail_times, args=[key, 1], retry={"max_attempts": 3,
                                                                 "delays": [0]})
    job = bgp.jobs.wait(job_id)
    assert (job.state, job.result, job.attempt) == ("Succeeded", 2, 2)
    names = [s.name for s in bgp.jobs.history(job_id)]
    assert names == ["Created", "Enqueued", "Executing", "Failed", "Retrying", "Enqueued",
                     "Executing", "Succeeded"] or "Retrying" in names


def test_a_job_whose_worker_is_killed_is_recovered(env, sink):
    bgp = publisher(env)
    key = f"sa-kill-{uuid.uuid4().hex}"
    fast = {**env, "BGP_TEST_LOCK_TIMEOUT": "3", "BGP_TEST_MONITOR_INTERVAL": "1"}
    victim = WorkerProcess(APP, fast, [env["BGP_TEST_QUEUE"]]).start()
    try:
        job_id = bgp.jobs.submit(J.slow_first_time, args=[key, 60])
        bgp.jobs.wait(job_id, states=["Executing"])
        deadline = time.monotonic() + 30
        while sink.get(key) != "1":  # the callable itself has started
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
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
