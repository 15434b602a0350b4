"""The console's Queues page asks the broker itself: messages published to a queue no worker
consumes, at two priorities, on the suite's own Redis (per priority) and RabbitMQ vhost
(total and consumers; per priority is not visible over AMQP, and the page says so), next
to the job store's oldest waiting job, throughput and failure rate of the last hour. An
unknown transport and a broker that is down are said on the page, never a 500."""
from __future__ import annotations

import re
import uuid

import pytest
from celery import Celery
from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client

from celery_bgp import BackgroundProcessing, Priority
from celery_bgp.contrib.django.console import queues as queues_page
from celery_bgp.priority import REDIS_PRIORITY_STEPS
from tests.apps import jobs as J
from tests.conftest import BROKER_DB

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PAGE = "/admin/celery_bgp/job/queues/"


def engine(broker_url: str, queue: str) -> BackgroundProcessing:
    app = Celery(f"console-q-{uuid.uuid4().hex[:6]}", set_as_current=False)
    app.conf.update(broker_url=broker_url, task_default_queue=queue, task_queue_max_priority=10,
                    broker_transport_options={"priority_steps": REDIS_PRIORITY_STEPS,
                                              "queue_order_strategy": "priority"},
                    broker_connection_retry_on_startup=True)
    return BackgroundProcessing(app, name=f"console-{uuid.uuid4().hex[:6]}",
                                job_store="django://", job_modules=["tests.apps"],
                                job_retry={"max_attempts": 1}, event_repository="memory://")


@pytest.fixture
def root(db):
    cache.clear()
    client = Client()
    client.force_login(get_user_model().objects.create_superuser(
        f"q-{uuid.uuid4().hex[:6]}", password="pw"))
    yield client
    cache.clear()


def backlog(bgp: BackgroundProcessing, queue: str) -> tuple[str, str]:
    """2 HIGH and 3 LOW jobs waiting; one job succeeded and one failed (run here, in
    process: their NORMAL messages stay in the broker, stale). Returns (oldest, failed)."""
    oldest = bgp.jobs.submit(J.add, args=[1, 1], queue=queue, priority=Priority.HIGH)
    bgp.jobs.submit(J.add, args=[1, 2], queue=queue, priority=Priority.HIGH)
    for n in range(3):
        bgp.jobs.submit(J.add, args=[n, 0], queue=queue, priority=Priority.LOW)
    done = bgp.jobs.submit(J.add, args=[2, 2], queue=queue)
    failed = bgp.jobs.submit(J.fail, args=["no luck"], queue=queue)
    for job_id in (done, failed):
        bgp.job_task.apply((job_id, bgp.jobs.get(job_id).execution_id))
    assert [bgp.jobs.get(j).state for j in (done, failed)] == ["Succeeded", "Failed"]
    return oldest, failed


def row_of(page: str, queue: str) -> str:
    start = page.index(f'<tr class="bgp-queue" data-queue="{queue}">')
    return page[start:page.index("</tr>", start)]


def cells(row: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]


def test_redis_depth_per_priority_with_the_store_figures(redis_base, root, monkeypatch):
    queue = f"console-redis-{uuid.uuid4().hex[:8]}"
    bgp = engine(f"{redis_base}/{BROKER_DB}", queue)
    monkeypatch.setattr(queues_page, "find_bgp", lambda: bgp)
    oldest, _ = backlog(bgp, queue)
    try:
        response = root.get(PAGE)
        assert response.status_code == 200
        page = response.content.decode()
        assert 'data-bgp-live="/admin/celery_bgp/job/queues/"' in page
        assert [label for label in response.context["report"].levels] == [
            "CRITICAL", "HIGH", "NORMAL", "LOW", "NONE"]
        # queue, total, critical, high, normal, low, none, consumers, Enqueued (store), oldest,
        # finished, per minute, failed
        row = cells(row_of(page, queue))
        assert row[1:7] == ["7", "0", "2", "2", "3", "0"]
        assert row[8] == "5"
        assert row[10:12] == ["2", "0.0"] and row[12].startswith("50.0 %")
        assert f'href="/admin/celery_bgp/job/{quote(oldest)}/change/"' in row_of(page, queue)
        assert "One Redis list per priority step" in page
        live = root.get(PAGE, HTTP_X_BGP_LIVE="1").content.decode()
        assert "<html" not in live and cells(row_of(live, queue))[1] == "7"
    finally:
        import redis

        client = redis.Redis.from_url(f"{redis_base}/{BROKER_DB}")
        client.delete(*[queue] + [f"{queue}\x06\x16{step}" for step in REDIS_PRIORITY_STEPS])


def test_rabbitmq_depth_and_consumers_and_no_per_priority(amqp_url, root, monkeypatch):
    queue = f"console-amqp-{uuid.uuid4().hex[:8]}"
    bgp = engine(amqp_url, queue)
    monkeypatch.setattr(queues_page, "find_bgp", lambda: bgp)
    backlog(bgp, queue)
    try:
        response = root.get(PAGE)
        page = response.content.decode()
        assert response.context["report"].levels == []
        row = cells(row_of(page, queue))
        assert row[1] == "7"  # 5 waiting + 2 stale: ready messages
        assert row[2].startswith("0")  # no consumer
        assert row[3] == "5"
        assert "does not tell how many wait at each priority" in page
    finally:
        with bgp.app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)


def test_an_unknown_transport_and_a_broker_that_is_down(root, monkeypatch):
    memory = engine("memory://", "console-memory")
    monkeypatch.setattr(queues_page, "find_bgp", lambda: memory)
    page = root.get(PAGE).content.decode()
    assert "Queue depths are not available for memory." in page
    cache.clear()
    down = engine("redis://127.0.0.1:1/0", "console-down")
    monkeypatch.setattr(queues_page, "find_bgp", lambda: down)
    response = root.get(PAGE)
    assert response.status_code == 200
    assert "Could not read the queue depths from the broker (redis)" in response.content.decode()
