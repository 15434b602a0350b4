"""No job is stranded by an election handler, on real workers (Redis and RabbitMQ, the
Django store on PostgreSQL): whatever a veto returns for Executing, the job ends in a
well-defined state and its history says why."""
from __future__ import annotations

import time

import pytest

from celery_bgp.jobs.machine import REFUSED_ELECTION
from tests.apps import jobs as J
from tests.jobs.test_workers import broker_url, env, publisher, worker  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_veto_that_fails_the_job_is_applied(env, worker):  # noqa: F811
    bgp = publisher(env)
    job_id = bgp.jobs.submit(J.add, args=[1, 2], properties={"veto": "fail"})
    job = bgp.jobs.wait(job_id, timeout=30)
    assert job.state == "Failed"
    last = bgp.jobs.history(job_id)[-1]
    assert (last.data["exception_type"], last.data["message"]) == ("tests.Vetoed",
                                                                   "vetoed by the test")
    assert [s.name for s in bgp.jobs.history(job_id)] == ["Created", "Enqueued", "Failed"]
    # The worker that asked for Executing gives its lock back right after the write.
    deadline = time.monotonic() + 10
    while bgp.jobs.get(job_id).lock is not None:
        assert time.monotonic() < deadline, "the vetoed job's lock was never released"
        time.sleep(0.05)


@pytest.mark.parametrize("veto, problem", [
    ("succeed", "elected Succeeded, which cannot follow Enqueued"),
    ("raise", "raised RuntimeError('the veto handler crashed')"),
])
def test_a_refused_replacement_fails_the_job_with_the_reason(env, worker, veto, problem):  # noqa: F811
    bgp = publisher(env)
    job_id = bgp.jobs.submit(J.add, args=[1, 2], properties={"veto": veto})
    job = bgp.jobs.wait(job_id, timeout=30)
    assert job.state == "Failed"
    last = bgp.jobs.history(job_id)[-1]
    assert last.data["exception_type"] == REFUSED_ELECTION
    assert "odd_vetoes" in last.data["message"] and problem in last.data["message"]
    # The job can be requeued once the veto is lifted, and then runs.
    bgp.jobs.store.set_properties(job_id, {"veto": "no"})
    bgp.jobs.requeue(job_id)
    assert bgp.jobs.wait(job_id, timeout=30, states=["Succeeded"]).result == 3
