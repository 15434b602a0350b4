"""The daemons' admin on PostgreSQL: the list and page, and stop/start/restart actions
that need ``celery_bgp.control_daemon``, reach a running daemon and are in its History."""
from __future__ import annotations

import time
import uuid

import pytest
from celery import Celery
from django.contrib.admin.models import LogEntry
from django.test import Client

from celery_bgp import BackgroundProcessing
from celery_bgp.contrib.django.daemon_models import Daemon
from celery_bgp.daemons.runner import Runner
from tests.apps import daemon_fns
from tests.daemons.conftest import wait_for
from tests.helpers.admin import staff_with
from tests.helpers.databases import close_connections_at_thread_end

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

LIST = "/admin/celery_bgp/daemon/"


@pytest.fixture
def running(monkeypatch, redis_base):
    """A daemon kept alive by a runner in this process, on the Django store."""
    close_connections_at_thread_end(monkeypatch)
    key = f"bgp-admin-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("BGP_TEST_DAEMON_KEY", key)
    monkeypatch.setenv("BGP_TEST_SINK", f"{redis_base}/13")
    app = Celery("daemon-admin", set_as_current=False)
    bgp = BackgroundProcessing(app, job_store="django://", job_modules=["tests.apps"],
                               job_lock_timeout=2.0)
    bgp.daemon("feed", daemon_fns.waits)
    runner = Runner(bgp.daemons, "admin-test-worker", {"celery"})
    runner.start()
    wait_for(lambda: bgp.daemons.get("feed").status == "running", 15, "the daemon running")
    yield bgp, key
    runner.stop()


def act(client: Client, action: str, ids: list[str]):
    return client.post(LIST, {"action": action, "_selected_action": ids}, follow=True)


def test_operators_stop_and_start_a_running_daemon_from_the_admin(running):
    bgp, key = running
    from tests.apps.jobs import sink

    viewer = staff_with("view_daemon")
    page = viewer.get(LIST).content.decode()
    assert "feed" in page and "running" in page and "admin-test-worker" in page
    assert "stop_daemons" not in page  # no control permission: no actions offered
    act(viewer, "stop_daemons", ["default:feed"])
    time.sleep(1)
    assert bgp.daemons.get("feed").desired == "running"  # refused
    assert staff_with().get(LIST).status_code == 403

    operator = staff_with("view_daemon", "control_daemon")
    assert "stop_daemons" in operator.get(LIST).content.decode()
    response = act(operator, "stop_daemons", ["default:feed"])
    assert "Asked to stop 1 daemon: feed." in response.content.decode()
    wait_for(lambda: sink().llen(f"{key}:feed:ends") == 1, 15, "the daemon to stop")
    wait_for(lambda: bgp.daemons.get("feed").status == "stopped", 10, "status stopped")
    act(operator, "start_daemons", ["default:feed"])
    wait_for(lambda: sink().llen(f"{key}:feed:starts") == 2, 15, "the daemon to start")
    history = list(LogEntry.objects.filter(object_id="default:feed").order_by("id")
                   .values_list("change_message", flat=True))
    assert history == ["Asked to stop (admin action).", "Asked to start (admin action)."]
    detail = operator.get(f"{LIST}default:feed/change/").content.decode()
    assert "stopping on admin-test-worker: stopped by an operator" in detail
    assert Daemon.objects.get(pk="default:feed").generation == 1
