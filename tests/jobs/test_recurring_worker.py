"""Pausing a recurring job, with a real ``celery worker -B`` (beat's default scheduler)
on the suite's Redis and the Django store: the pause stops the runs within one interval
(each skipped run logged by the worker), resume starts them again, and a run now is a
new job with ``recurring=<name>`` that runs at once, paused or not."""
from __future__ import annotations

import time
import uuid

import pytest

from celery_bgp.jobs import P
from tests.apps.admin_app import bgp
from tests.conftest import BROKER_DB, stack_env
from tests.helpers.waiting import wait_for
from tests.helpers.workers import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

EVERY = 1.0


def runs(name: str) -> int:
    return bgp.jobs.count(P("recurring") == name)


@pytest.fixture
def recurring(redis_base, tmp_path):
    """A recurring job every second, declared here (as in the admin's process) and in a
    worker that runs beat too."""
    name = f"tick-{uuid.uuid4().hex[:8]}"
    queue = f"bgp-recurring-{uuid.uuid4().hex[:8]}"
    bgp.jobs.recurring(name, "tests.apps.jobs:add", EVERY, args=[1, 2], queue=queue)
    env = {**stack_env(f"{redis_base}/{BROKER_DB}", redis_base, queue),
           "BGP_TEST_RECURRING": name, "BGP_TEST_RECURRING_EVERY": str(EVERY)}
    worker = WorkerProcess("tests.apps.recurring_worker_app", env, [queue], pool="threads",
                           concurrency=2,
                           extra_args=("-B", "-s", str(tmp_path / "beat-schedule")))
    worker.start()
    try:
        yield name, worker
    finally:
        worker.stop()
        bgp.jobs.recurring_jobs.pop(name, None)
        bgp.app.conf.beat_schedule.pop(bgp.jobs.entry_name(name), None)


def test_pause_skips_beat_runs_resume_runs_again_and_run_now_runs_at_once(recurring):
    name, worker = recurring
    wait_for(lambda: runs(name) >= 2, 20, "beat ran the recurring job twice")

    paused = bgp.jobs.pause_recurring(name, by="alice")
    assert (paused.paused, paused.paused_by) == (True, "alice")
    time.sleep(EVERY * 1.5)  # a run that read the flag just before the pause may finish
    before = runs(name)
    time.sleep(EVERY * 4)
    assert runs(name) == before, "a paused recurring job ran"
    skipped = worker.log().count(f"recurring job '{name}' is paused (by alice")
    assert skipped >= 3, worker.log()[-3000:]

    # A run now runs at once, paused or not, as a job with recurring=<name>.
    job_id = bgp.jobs.run_recurring(name)
    job = bgp.jobs.wait(job_id, timeout=15)
    assert (job.state, job.result) == ("Succeeded", 3)
    assert bgp.jobs.properties(job_id)["recurring"] == name
    assert bgp.jobs.recurring_records()[name].last_job == job_id

    resumed = bgp.jobs.resume_recurring(name, by="bob")
    assert not resumed.paused
    after = runs(name)
    wait_for(lambda: runs(name) >= after + 2, 10, "beat ran the resumed job again")
    record = bgp.jobs.recurring_records()[name]  # then a run may land before the search
    newest = bgp.jobs.search(P("recurring") == name, order_by=("-created",), limit=3)
    assert record.last_job in [job.id for job in newest]
    assert record.last_beat >= resumed.paused_at
