"""The console's Recurring page through the Django admin (Django store, Redis broker): every
schedule with its words, next and last run (linked), live fragment; the actions are
permission-checked (403), CSRF-protected, reported as a message and in the History."""
from __future__ import annotations

import uuid

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model
from django.test import Client

from celery_bgp.contrib.django.models import RecurringJob
from tests.apps.admin_app import bgp
from tests.helpers.admin import staff_with

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PAGE = "/admin/celery_bgp/job/recurring/"
ACTION = "/admin/celery_bgp/job/recurring/action/"


@pytest.fixture
def name(settings, redis_base):
    """A recurring job every 30 s declared in this (the admin's) process; its runs are
    sent to a queue of its own on the suite's Redis."""
    settings.CELERY_BGP_INSTANCE = "tests.apps.admin_app.bgp"
    name = f"clean-{uuid.uuid4().hex[:8]}"
    bgp.jobs.recurring(name, "tests.apps.jobs:add", 30, args=[1, 2],
                       queue=f"bgp-recurring-page-{uuid.uuid4().hex[:6]}")
    yield name
    bgp.jobs.recurring_jobs.pop(name, None)
    bgp.app.conf.beat_schedule.pop(bgp.jobs.entry_name(name), None)


@pytest.fixture
def root(db):
    client = Client(enforce_csrf_checks=True)
    client.force_login(get_user_model().objects.create_superuser(
        f"root-{uuid.uuid4().hex[:6]}", password="pw"))
    return client


def post(client: Client, action: str, name: str):
    page = client.get(PAGE)
    token = page.cookies["csrftoken"].value if "csrftoken" in page.cookies else \
        client.cookies["csrftoken"].value
    return client.post(ACTION, {"action": action, "name": name, "csrfmiddlewaretoken": token})


def test_the_page_lists_every_schedule_with_next_and_last_run(root, name):
    job_id = bgp.jobs.run_recurring(name)
    html = root.get(PAGE).content.decode()
    assert name in html and "every 30 seconds" in html
    link = f"/admin/celery_bgp/job/{quote(job_id)}/change/"  # the admin's quoting ("_")
    assert link in html  # the last run, linked
    assert job_id in root.get(link).content.decode()
    assert "bgp:default:purge" in html and "read-only" in html  # beat's other entries
    assert 'data-bgp-live="/admin/celery_bgp/job/recurring/?v=' in html
    fragment = root.get(PAGE, HTTP_X_BGP_LIVE="1").content.decode()
    assert name in fragment and "<html" not in fragment and "Run now" in fragment


def test_actions_need_manage_recurring_and_csrf(name):
    viewer = staff_with("view_job")
    assert viewer.get(PAGE).status_code == 200
    assert "Run now" not in viewer.get(PAGE).content.decode()
    assert viewer.post(ACTION, {"action": "pause", "name": name}).status_code == 403
    assert not bgp.jobs.recurring_records().get(name, None) or \
        not bgp.jobs.recurring_records()[name].paused
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(get_user_model().objects.create_superuser(
        f"root-{uuid.uuid4().hex[:6]}", password="pw"))
    assert strict.post(ACTION, {"action": "pause", "name": name}).status_code == 403  # no CSRF
    manager = staff_with("view_job", "manage_recurring")
    assert manager.get(ACTION).status_code == 405
    assert manager.post(ACTION, {"action": "pause", "name": name}).status_code == 302
    assert bgp.jobs.recurring_records()[name].paused


def test_pause_resume_and_run_now_are_messages_and_history(root, name):
    response = post(root, "pause", name)
    assert response.status_code == 302
    record = bgp.jobs.recurring_records()[name]
    assert record.paused and record.paused_by.startswith("root-")
    page = root.get(PAGE).content.decode()
    assert "Paused" in page and f"by {record.paused_by}" in page and "Resume" in page

    post(root, "trigger", name)
    job_id = bgp.jobs.recurring_records()[name].last_job
    assert bgp.jobs.properties(job_id)["recurring"] == name
    page = root.get(PAGE).content.decode()
    assert f"Started a run of {name} now: job" in page and job_id in page

    post(root, "resume", name)
    assert not bgp.jobs.recurring_records()[name].paused
    row = RecurringJob.objects.get(environment="default", name=name)
    logged = list(LogEntry.objects.filter(object_id=str(row.pk)).order_by("action_time")
                  .values_list("change_message", flat=True))
    assert logged == ["Paused", f"Ran now: job {job_id}", "Resumed"]
    assert LogEntry.objects.filter(object_id=job_id).exists()  # the new job's History
    assert f"recurring job {name}" in root.get(PAGE).content.decode()  # recent actions


def test_an_unknown_name_is_a_message_not_an_error(root, name):
    response = post(root, "pause", "no-such-job")
    assert response.status_code == 302
    assert "No recurring job" in root.get(PAGE).content.decode()


def test_a_live_ask_is_one_query_and_204_while_nothing_changed(root, name):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    first = root.get(PAGE)
    shown = first.content.decode()
    url = first["X-BGP-Live-Url"]
    assert f'data-bgp-live="{url}"' in shown.replace("&amp;", "&")
    with CaptureQueriesContext(connection) as probe:
        assert root.get(url, HTTP_X_BGP_LIVE="1").status_code == 204
    mine = [q["sql"] for q in probe.captured_queries
            if "django_session" not in q["sql"] and "auth_user" not in q["sql"]]
    assert len(mine) == 1 and "celery_bgp_recurringjob" in mine[0], mine

    bgp.jobs.pause_recurring(name, by="carol")  # another operator, another process
    changed = root.get(url, HTTP_X_BGP_LIVE="1")
    assert changed.status_code == 200 and "by carol" in changed.content.decode()
    assert changed["X-BGP-Live-Url"] != url
    assert root.get(changed["X-BGP-Live-Url"], HTTP_X_BGP_LIVE="1").status_code == 204
