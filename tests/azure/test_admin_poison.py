"""The admin dashboard shows the poison queue sizes of an azurequeue:// broker (Azurite)."""
from __future__ import annotations

import pytest
from celery import Celery
from django.contrib.auth import get_user_model
from django.test import Client

from celery_bgp import BackgroundProcessing
from celery_bgp.contrib.django import admin_dashboard
from celery_bgp.transport import names
from celery_bgp.transport.poison import PoisonQueues
from tests.azure.conftest import FAST
from tests.azure.helpers import collect, publish

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def test_the_dashboard_counts_poison_messages_per_queue(azurite, prefix, connect, monkeypatch):
    app = Celery("azure-admin", set_as_current=False)
    app.conf.update(broker_url="azurequeue://",
                    broker_transport_options={**FAST, "queue_name_prefix": prefix})
    bgp = BackgroundProcessing(app, name=f"admin-{prefix}", job_store="django://",
                               job_modules=["tests.apps"])
    monkeypatch.setattr(admin_dashboard, "find_bgp", lambda: bgp)
    bgp.jobs.submit("tests.apps.jobs:add", args=[1, 2], queue="orders", idle=True)
    bgp.jobs.submit("tests.apps.jobs:add", args=[1, 2], queue="invoices", idle=True)
    conn = connect()
    storage = conn.transport.storage
    storage.send_text(names.azure_queue_name("orders", prefix), "<<garbage>>")
    publish(conn, "orders", {"n": 1})
    assert len(collect(conn, "orders", 1, timeout=5)) == 1  # the garbage went to poison
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("az", password="pw"))
    response = client.get("/admin/celery_bgp/job/dashboard/")
    assert response.status_code == 200
    assert response.context["has_poison"] is True
    poison = {row.queue: row.poison for row in response.context["queues"]}
    assert poison == {"orders": 1, "invoices": 0}
    assert "poison messages" in response.content.decode()


def test_the_queues_page_shows_depth_per_priority_and_requeues_and_purges_poison(
        azurite, prefix, connect, monkeypatch):
    from django.contrib.admin.models import LogEntry
    from django.core.cache import cache

    from celery_bgp.contrib.django.console import queues as queues_page
    from tests.helpers.admin import staff_with

    app = Celery("azure-console", set_as_current=False)
    app.conf.update(broker_url="azurequeue://", task_default_queue="orders",
                    broker_transport_options={**FAST, "queue_name_prefix": prefix})
    bgp = BackgroundProcessing(app, name=f"console-{prefix}", job_store="django://",
                               job_modules=["tests.apps"])
    monkeypatch.setattr(queues_page, "find_bgp", lambda: bgp)
    cache.clear()
    conn = connect()
    storage = conn.transport.storage
    for n in range(2):
        storage.send_text(names.azure_queue_name("orders", prefix), f"<<garbage {n}>>")
    publish(conn, "orders", {"n": 1})
    assert len(collect(conn, "orders", 1, timeout=5)) == 1  # the garbage went to poison
    for priority in (7, 7, 3):  # HIGH, HIGH, LOW: nobody consumes them
        publish(conn, "orders", {"p": priority}, priority=priority)

    viewer, operator = staff_with("view_job"), staff_with("view_job", "manage_queue")
    response = viewer.get("/admin/celery_bgp/job/queues/")
    depth = response.context["report"].depths["orders"]
    assert (depth.total, depth.poison) == (3, 2)
    assert dict(depth.levels) == {"CRITICAL": 0, "HIGH": 2, "NORMAL": 0, "LOW": 1, "NONE": 0}
    listing = viewer.get("/admin/celery_bgp/job/queues/?poison=orders")
    assert [m.text for m in listing.context["poison"]["messages"]] == [
        "<<garbage 0>>", "<<garbage 1>>"]
    assert 'id="bgp-poison-requeue"' not in listing.content.decode()  # no permission
    first = listing.context["poison"]["messages"][0].id
    poison_url = "/admin/celery_bgp/job/queues/poison/"
    assert viewer.post(poison_url, {"queue": "orders", "operation": "purge",
                                    "confirm": "yes"}).status_code == 403

    confirm = operator.post(poison_url, {"queue": "orders", "operation": "requeue",
                                         "ids": [first]})
    assert "Requeue 1 chosen poison message of orders?" in confirm.content.decode()
    done = operator.post(poison_url, {"queue": "orders", "operation": "requeue",
                                      "ids": [first], "confirm": "yes"}, follow=True)
    assert [str(m) for m in done.context["messages"]] == [
        "Requeued 1 poison message of orders."]
    cache.clear()
    depth = operator.get("/admin/celery_bgp/job/queues/").context["report"].depths["orders"]
    assert (depth.total, depth.poison) == (4, 1)  # back in its queue (normal priority)

    operator.post(poison_url, {"queue": "orders", "operation": "purge", "confirm": "yes"})
    assert PoisonQueues(conn).count("orders") == 0
    logged = [e.change_message for e in LogEntry.objects.filter(object_repr="queue orders")
              .order_by("id")]
    assert logged == [
        f"Console: Requeued 1 poison message of orders. (asked for: message ids {first})",
        "Console: Deleted 1 poison message of orders. (asked for: every message)"]
