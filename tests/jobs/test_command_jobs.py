"""Commands tracked as jobs with ``event_repository="django-db://"``, on a real worker:
one state per event in the command's life order, through a failure and a requeue, and
the admin page of the job (the failure box only while it is Failed)."""
from __future__ import annotations

import re
import time
import uuid
from datetime import timedelta

import pytest
from celery import Celery
from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model
from django.test import Client

from celery_bgp import BackgroundProcessing, CommandEvent, ErrorInfo, EventStatus
from celery_bgp.commands import new_command_id, utcnow
from celery_bgp.contrib.django.models import JobState
from celery_bgp.contrib.django.store import DjangoJobStore
from tests.apps.commands import FailOnce
from tests.conftest import BROKER_DB, failed, stack_env
from tests.helpers.workers import WorkerProcess
from tests.jobs.test_workers import publisher  # the worker app's stores, publisher side

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

S = EventStatus
APP = "tests.apps.jobs_worker_app"
EVENTS = "django-db://"


@pytest.fixture(params=["redis", "amqp"])
def env(request, redis_base):
    if request.param == "redis":
        broker_url = f"{redis_base}/{BROKER_DB}"
    else:
        broker_url = request.getfixturevalue("amqp_url")
    return {**stack_env(broker_url, redis_base, f"bgp-cmdjobs-{uuid.uuid4().hex[:8]}"),
            "BGP_TEST_EVENTS": EVENTS}


@pytest.fixture
def worker(env, request):
    with WorkerProcess(APP, env, [env["BGP_TEST_QUEUE"]]) as running:
        yield running
        if failed(request):
            print(f"--- worker log ---\n{running.log()[-6000:]}")


@pytest.fixture
def root():
    client = Client()
    client.force_login(get_user_model().objects.create_superuser(
        f"root-{uuid.uuid4().hex[:6]}", password="pw"))
    return client


def wait_for(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def job_page(client: Client, job_id: str) -> str:
    response = client.get(f"/admin/celery_bgp/job/{quote(job_id)}/change/")
    assert response.status_code == 200
    return response.content.decode()


LIFE = ["Enqueued", "Executing", "Failed", "Enqueued", "Executing", "Succeeded"]


def test_a_failed_then_requeued_command_has_one_state_per_event_in_life_order(
        env, worker, root, settings):
    settings.CELERY_BGP_INSTANCE = "tests.apps.admin_app.bgp"
    bgp = publisher(env)
    command = FailOnce(key=f"fail-once-{uuid.uuid4().hex}")
    bgp.dispatch(command)
    assert bgp.jobs.wait(command.id).state == "Failed"
    bgp.recorder.flush()
    wait_for(lambda: [s.name for s in bgp.jobs.history(command.id)] == LIFE[:3]
             or len(bgp.jobs.history(command.id)) > 3, "the first life")
    assert [s.name for s in bgp.jobs.history(command.id)] == LIFE[:3]

    failed_page = job_page(root, command.id)
    assert 'id="bgp-failure"' in failed_page
    box = failed_page[failed_page.index('id="bgp-failure"'):
                      failed_page.index('id="bgp-timeline"')]
    assert "tests.apps.commands.Boom" in box and "first run of" in box

    bgp.jobs.requeue(command.id)
    wait_for(lambda: bgp.jobs.get(command.id).state == "Succeeded", "the requeued run")
    bgp.recorder.flush()
    time.sleep(0.5)  # any late (or duplicated) write from either side lands by now

    history = bgp.jobs.history(command.id)
    assert [s.name for s in history] == LIFE
    assert [s.sequence for s in history] == list(range(1, len(LIFE) + 1))
    assert [s.data["event"] for s in history] == [
        "DISPATCHED", "PROCESSING", "ERROR", "DISPATCHED", "PROCESSING", "PROCESSED"]
    assert [s.data.get("requeues", 0) for s in history] == [0, 0, 0, 1, 1, 1]
    elected = [s.elected for s in history]
    assert elected == sorted(elected)
    for state in history:
        assert "order" not in state.data, state
    assert JobState.objects.filter(job_id=command.id).count() == len(LIFE)
    job = bgp.jobs.get(command.id)
    assert (job.state, job.worker) == ("Succeeded", worker.hostname)

    page = job_page(root, command.id)
    assert 'id="bgp-failure"' not in page
    timeline = page[page.index('id="bgp-timeline"'):page.index('id="bgp-logs"')]
    assert re.findall(r">(\w+)</span>", timeline) == LIFE
    assert "+-" not in timeline
    assert not re.search(r"\border\b", timeline)  # no internal key in the data column
    # the first attempt's failure stays in its row, traceback included
    assert "tests.apps.commands.Boom" in timeline and "raise Boom" in timeline


def test_the_event_repository_and_the_job_store_on_one_database_are_one_writer():
    bgp = BackgroundProcessing(Celery("one-writer", set_as_current=False), name="one-writer",
                               job_store="django://", event_repository="django-db://")
    assert bgp.recorder.repository.store == bgp.jobs.store  # two objects, one database
    assert bgp._job_recorder is None  # so each event is written once
    other = BackgroundProcessing(Celery("two-writers", set_as_current=False),
                                 name="two-writers", job_store="django://sqlite",
                                 event_repository="django-db://")
    assert other._job_recorder is not None


def test_the_timeline_after_is_never_negative_and_hides_internal_keys(root, settings):
    settings.CELERY_BGP_INSTANCE = "tests.apps.admin_app.bgp"
    store, cid, now = DjangoJobStore(), new_command_id(), utcnow()
    store.record_events([
        CommandEvent(cid, S.DISPATCHED, now, command_name="x.Y", command={"id": cid}),
        CommandEvent(cid, S.PROCESSING, now + timedelta(seconds=1), command_name="x.Y"),
        CommandEvent(cid, S.ERROR, now + timedelta(seconds=2), command_name="x.Y",
                     error=ErrorInfo("x.Boom", "boom")),
        # the requeue's publisher clock is behind the worker's
        CommandEvent(cid, S.DISPATCHED, now + timedelta(seconds=1.5), command_name="x.Y",
                     requeues=1),
    ], "default")
    # a state written before the life order had its own column kept it in its data
    JobState.objects.filter(job_id=cid, sequence=1).update(data={"event": "DISPATCHED",
                                                                 "order": "0000"})
    page = job_page(root, cid)
    assert 'id="bgp-failure"' not in page  # Enqueued again: the failure is history
    timeline = page[page.index('id="bgp-timeline"'):page.index('id="bgp-logs"')]
    assert re.findall(r">(\w+)</span>", timeline) == ["Enqueued", "Executing", "Failed",
                                                      "Enqueued"]
    assert "+-" not in timeline and "+0.000s" in timeline
    assert not re.search(r"\border\b", timeline)
