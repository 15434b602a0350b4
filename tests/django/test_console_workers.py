"""The console's Workers page against real ``celery worker`` processes on the suite's Redis:
a live worker with its host, pid, queues, concurrency and the job it runs (linked); the
same worker killed mid-job shown as gone, with the job recovery moved; and the control
actions (add / cancel a consumer, shutdown) answered by the worker, permission-checked,
confirmed and written to the admin History."""
from __future__ import annotations

import time
import uuid

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client

from tests.apps import jobs as J
from tests.apps.admin_app import bgp
from tests.conftest import BROKER_DB, stack_env
from tests.helpers.admin import staff_with
from tests.helpers.waiting import wait_for
from tests.helpers.workers import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PAGE = "/admin/celery_bgp/job/workers/"
CONTROL = "/admin/celery_bgp/job/workers/control/"
APP = "tests.apps.jobs_worker_app"


@pytest.fixture(autouse=True)
def admin_engine(settings, redis_base):
    settings.CELERY_BGP_INSTANCE = "tests.apps.admin_app.bgp"
    cache.clear()  # the console keeps its last broadcast round in the (local) cache
    yield
    cache.clear()


@pytest.fixture
def env(redis_base):
    """A queue of this test's own on the suite's Redis broker; short job locks."""
    env = stack_env(f"{redis_base}/{BROKER_DB}", redis_base, f"console-{uuid.uuid4().hex[:8]}")
    return {**env, "BGP_TEST_LOCK_TIMEOUT": "3", "BGP_TEST_MONITOR_INTERVAL": "1"}


@pytest.fixture
def root(db):
    client = Client()
    client.force_login(get_user_model().objects.create_superuser(
        f"root-{uuid.uuid4().hex[:6]}", password="pw"))
    return client


def live(client: Client) -> str:
    """The page's live fragment, as the console script asks for it."""
    response = client.get(PAGE, HTTP_X_BGP_LIVE="1")
    assert response.status_code == 200
    return response.content.decode()


def row_of(page: str, hostname: str, css: str = "bgp-worker") -> str:
    start = page.index(f'<tr class="{css}" data-worker="{hostname}">')
    return page[start:page.index("</tr>", start)]


def test_a_live_worker_and_its_job_then_the_worker_killed_mid_job_shows_as_gone(env, root,
                                                                                 sink):
    queue = env["BGP_TEST_QUEUE"]
    key = f"console-kill-{uuid.uuid4().hex}"
    victim = WorkerProcess(APP, env, [queue], concurrency=2).start()
    try:
        job_id = bgp.jobs.submit(J.slow_first_time, args=[key, 60], queue=queue)
        bgp.jobs.wait(job_id, states=["Executing"], timeout=30)
        wait_for(lambda: sink.get(key) == "1", what="the job's callable to start")

        response = root.get(PAGE)
        assert response.status_code == 200
        page = response.content.decode()
        assert 'data-bgp-live="/admin/celery_bgp/job/workers/"' in page
        row = row_of(page, victim.hostname)
        assert str(victim.proc.pid) in row  # the worker's main process
        assert f">{queue}<" in row and "prefork &times; 2" in row
        assert f'href="/admin/celery_bgp/job/{quote(job_id)}/change/"' in row
        assert "tests.apps.jobs:slow_first_time" in row
        assert " ago</span>" in row  # the job lock's heartbeat age
        snap = response.context["snapshot"]
        assert snap.error is None and snap.elapsed < 3
    finally:
        victim.kill()  # SIGKILL mid-job: its lock stops heartbeating

    with WorkerProcess(APP, env, [queue]) as rescuer:
        job = bgp.jobs.wait(job_id, timeout=60)
        assert job.state == "Succeeded", rescuer.log()[-3000:]
        cache.clear()  # the store's record of lost workers is reused for a minute
        page = live(root)
        gone = row_of(page, victim.hostname, "bgp-gone")
        assert f'href="/admin/celery_bgp/job/{quote(job_id)}/change/"' in gone
        assert "Enqueued" in gone  # recovery enqueued it again
        assert "last heartbeat before" in gone
        assert f'data-worker="{rescuer.hostname}"' in page
        assert f'class="bgp-worker" data-worker="{victim.hostname}"' not in page


def test_admins_opening_the_page_at_the_same_moment_share_one_broadcast_round(env):
    """docs/django.rst: the round is shared; requests of one process that find it expired
    together wait for one round instead of each asking every worker three questions."""
    from concurrent.futures import ThreadPoolExecutor

    from celery_bgp.contrib.django.console import inspection

    rounds = []
    real_round = inspection._round

    def counted(app, limit):
        rounds.append(limit)
        return real_round(app, limit)

    with WorkerProcess(APP, env, [env["BGP_TEST_QUEUE"]]) as worker:
        wait_for(lambda: worker.hostname in inspection.snapshot(bgp.app, fresh=True).workers,
                 20, "the worker in a round")
        inspection._round = counted
        try:
            with ThreadPoolExecutor(6) as pool:
                time.sleep(0.6)  # the round taken above has expired
                seen = list(pool.map(lambda _: inspection.snapshot(bgp.app, max_age=0.5),
                                     range(6)))
                time.sleep(0.6)  # expired again: the next six share one more round
                seen += list(pool.map(lambda _: inspection.snapshot(bgp.app, max_age=0.5),
                                      range(6)))
        finally:
            inspection._round = real_round
    assert all(worker.hostname in snap.workers for snap in seen)
    assert len(rounds) == 2, rounds


def test_control_actions_need_the_permission_and_the_worker_answers(env, root):
    queue, extra = env["BGP_TEST_QUEUE"], f"extra-{uuid.uuid4().hex[:6]}"
    with WorkerProcess(APP, env, [queue]) as worker:
        host = worker.hostname
        viewer = staff_with("view_job")
        assert viewer.get(PAGE).status_code == 200
        assert "Shut down" not in viewer.get(PAGE).content.decode()
        denied = viewer.post(CONTROL, {"action": "add_consumer", "worker": host,
                                       "queue": extra})
        assert denied.status_code == 403
        assert not LogEntry.objects.filter(object_repr=f"worker {host}").exists()

        operator = staff_with("view_job", "control_worker")
        response = operator.post(CONTROL, {"action": "add_consumer", "worker": host,
                                           "queue": extra}, follow=True)
        said = [str(m) for m in response.context["messages"]]
        assert said == [f"{host} answered: add consumer {extra}"]
        assert extra in row_of(live(operator), host)  # the next round sees the new queue
        entry = LogEntry.objects.get(object_repr=f"worker {host}")
        assert entry.change_message.startswith(f"Console: start consuming from {extra}")
        assert entry.user.username.startswith("ops-")

        response = operator.post(CONTROL, {"action": "cancel_consumer", "worker": host,
                                           "queue": extra}, follow=True)
        assert [str(m) for m in response.context["messages"]] == [
            f"{host} answered: no longer consuming from {extra}"]
        assert extra not in row_of(live(operator), host)

        # Shutdown: a confirmation page first, then the worker stops.
        confirm = operator.post(CONTROL, {"action": "shutdown", "worker": host})
        assert confirm.status_code == 200
        assert f"Shut down {host}?" in confirm.content.decode()
        assert worker.proc.poll() is None
        operator.post(CONTROL, {"action": "shutdown", "worker": host, "confirm": "yes"})
        wait_for(lambda: worker.proc.poll() is not None, what="the worker to exit")
        assert LogEntry.objects.filter(object_repr=f"worker {host}").count() == 3
        page = live(root)
        assert f'class="bgp-worker" data-worker="{host}"' not in page
        assert "(answered this console)" in row_of(page, host, "bgp-gone")  # its last seen


def test_a_broker_that_is_down_is_said_on_the_page(root, settings, monkeypatch):
    from tests.apps import admin_app

    monkeypatch.setattr(admin_app.app.conf, "broker_url", "redis://127.0.0.1:1/0")
    response = root.get(PAGE)
    assert response.status_code == 200
    assert "Could not ask the workers" in response.content.decode()
