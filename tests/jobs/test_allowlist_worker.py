"""The job allow-list on real ``celery worker`` processes (Redis and RabbitMQ, the Django
store on PostgreSQL): an attack path is refused at submit, and a stored row whose name
was tampered with ends Failed on the worker, with the reason, having run nothing."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from celery_bgp.contrib.django.models import Job
from celery_bgp.jobs import JobNotAllowed
from tests.apps import jobs as J
from tests.conftest import failed
from tests.helpers.servers import REDIS_HOST, REDIS_PORT, require_server
from tests.helpers.workers import WorkerProcess
from tests.jobs.test_workers import APP, broker_url, env, publisher  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

#: Paths through tests/apps/jobs.py (allowed: ``tests.apps``) to what it only imported.
ATTACKS = [
    "tests.apps.jobs:os.system",  # a module it imported
    "tests.apps.jobs:time.sleep",  # a builtin, through a module it imported
    "tests.apps.jobs:JobContext.info",  # a class it imported from celery_bgp
    "tests.apps.jobs:sink.__globals__",  # a dunder
]


@pytest.fixture(scope="module")
def redis_base():
    """Redis, without flushing the suite's databases: these tests use their own queue
    and ids, and another run may be using those databases right now."""
    require_server("Redis", REDIS_HOST, REDIS_PORT)
    return f"redis://{REDIS_HOST}:{REDIS_PORT}"


@pytest.fixture
def worker(env, request):  # noqa: F811
    with WorkerProcess(APP, env, [env["BGP_TEST_QUEUE"]]) as running:
        yield running
        if failed(request):
            print(f"--- worker log ---\n{running.log()[-6000:]}")


@pytest.mark.parametrize("attack", ATTACKS)
def test_an_attack_path_is_refused_at_submit_and_creates_nothing(env, attack):  # noqa: F811
    bgp = publisher(env)
    before = set(Job.objects.values_list("id", flat=True))
    with pytest.raises(JobNotAllowed, match="refused at"):
        bgp.jobs.submit(attack, args=["touch /tmp/never"])
    with pytest.raises(JobNotAllowed):
        bgp.jobs.recurring(f"attack-{uuid.uuid4().hex}", attack, 60)
    # Nothing was created (other tests' background writers may still add their rows).
    assert not Job.objects.exclude(id__in=before).filter(name=attack).exists()
    assert not Job.objects.exclude(id__in=before).filter(kind="callable").exists()


def test_a_tampered_row_fails_on_the_worker_and_runs_nothing(env, worker, tmp_path):  # noqa: F811
    bgp = publisher(env)
    markers: dict[str, Path] = {}
    for attack in ATTACKS:
        # A legitimate job, stored idle; its per-job policy would retry 3 times.
        job_id = bgp.jobs.submit(J.add, args=[1, 2], idle=True,
                                 retry={"max_attempts": 3, "delays": [0]})
        marker = tmp_path / f"attacked-{uuid.uuid4().hex}"
        # Someone with write access to the store rewrites the row.
        assert Job.objects.filter(id=job_id).update(
            name=attack, args=[f"touch {marker}"], kwargs={}) == 1
        markers[job_id] = marker
    for job_id in markers:
        bgp.jobs.requeue(job_id)
    for job_id, marker in markers.items():
        job = bgp.jobs.wait(job_id)
        attack = job.name
        assert (job.state, job.attempt) == ("Failed", 1), attack  # not retried
        assert job.worker == worker.hostname
        history = bgp.jobs.history(job_id)
        assert [s.name for s in history] == ["Created", "Idle", "Enqueued", "Executing",
                                             "Failed"], attack
        reason = history[-1].data
        assert reason["exception_type"] == "celery_bgp.jobs.invocation.JobNotAllowed", reason
        assert f"job {attack!r} refused at" in reason["message"], reason
        assert not marker.exists(), attack
    # The worker still runs what is allowed.
    assert bgp.jobs.wait(bgp.jobs.enqueue(J.add, 20, 22)).result == 42
