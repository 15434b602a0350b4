"""The admin dashboard shows the poison queue sizes of an azurequeue:// broker (Azurite)."""
from __future__ import annotations

import pytest
from celery import Celery
from django.contrib.auth import get_user_model
from django.test import Client

from celery_bgp import BackgroundProcessing
from celery_bgp.contrib.django import admin_dashboard
from celery_bgp.transport import names
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
