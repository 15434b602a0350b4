"""The console's dashboard against known jobs, on PostgreSQL, SQLite and MariaDB: counts
per state and queue, the oldest waiting job, finished jobs by minute and by hour, run time
percentiles per name, the charts' axes, legends and hover titles; an empty store and a
store with only old jobs; the live parts (fragment only, 304 while nothing changed); and
the bounded counts PostgreSQL uses over a big table."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connections
from django.test import Client

from celery_bgp.commands import utcnow
from celery_bgp.contrib.django import admin_dashboard
from celery_bgp.contrib.django.admin_dashboard import dashboard_context
from celery_bgp.contrib.django.console import dashboard_stats
from celery_bgp.contrib.django.models import Job, JobState
from tests.helpers.admin import staff_with
from tests.helpers.databases import alias_params, django_db_mark, require_database

pytestmark = pytest.mark.integration

DASHBOARD = "/admin/celery_bgp/job/dashboard/"
LIVE = {"X-BGP-Live": "1"}


@pytest.fixture(params=alias_params())
def alias(request):
    require_database(request.param)
    return request.param


def add_job(alias: str, name: str, queue: str, state: str, created: datetime,
            finished: datetime | None = None, run: float | None = None) -> str:
    """A job row with its history: Enqueued at ``created``, Executing ``run`` seconds
    before ``finished`` (its ``modified``)."""
    job_id = uuid.uuid4().hex
    modified = finished or created
    job = Job.objects.using(alias).create(id=job_id, name=name, queue=queue, state=state,
                                          created=created, modified=modified)
    states = [JobState(job=job, sequence=1, name="Enqueued", elected=created)]
    if run is not None:
        states.append(JobState(job=job, sequence=2, name="Executing",
                               elected=modified - timedelta(seconds=run)))
        states.append(JobState(job=job, sequence=3, name=state, elected=modified))
    JobState.objects.using(alias).bulk_create(states)
    return job_id


def known_jobs(alias: str, now: datetime) -> None:
    """q-a: 4 shop:a succeeded 5 minutes ago (1-4 s), 1 shop:b failed 3 hours ago (10 s),
    2 waiting (10 and 1 minutes); q-b: 1 executing, 1 succeeded 2 days ago."""
    recent = now - timedelta(minutes=5)
    for seconds in (1, 2, 3, 4):
        add_job(alias, "shop:a", "q-a", "Succeeded", recent - timedelta(seconds=30),
                recent, run=seconds)
    add_job(alias, "shop:b", "q-a", "Failed", now - timedelta(hours=3, minutes=1),
            now - timedelta(hours=3), run=10)
    add_job(alias, "shop:a", "q-a", "Enqueued", now - timedelta(minutes=10))
    add_job(alias, "shop:a", "q-a", "Enqueued", now - timedelta(minutes=1))
    add_job(alias, "shop:c", "q-b", "Executing", now - timedelta(minutes=2))
    add_job(alias, "shop:old", "q-b", "Succeeded", now - timedelta(days=2, minutes=1),
            now - timedelta(days=2), run=5)


def slot_of(slots, when: datetime, step: timedelta):
    [found] = [s for s in slots if s.start <= when < s.start + step]
    return found


def test_numbers_and_charts_from_known_jobs(alias):
    now = utcnow()
    known_jobs(alias, now)
    context = dashboard_context(using=alias)

    assert dict(context["states"]) == {"Succeeded": 5, "Failed": 1, "Enqueued": 2,
                                       "Executing": 1}
    assert context["total"] == 9 and context["total"].exact
    rows = {row.queue: row for row in context["queues"]}
    assert (rows["q-a"].total, rows["q-b"].total) == (7, 2)
    assert dict(zip(context["queue_states"], rows["q-a"].counts, strict=True)) == {
        "Enqueued": 2, "Executing": 0, "Retrying": 0, "Awaiting": 0, "Failed": 1,
        "Succeeded": 4}
    assert 590 <= rows["q-a"].waiting_seconds < 660
    assert rows["q-b"].oldest_waiting is None

    minutes = [b["bucket"] for b in context["buckets"]]
    assert len(minutes) == 60
    five_ago = slot_of(minutes, now - timedelta(minutes=5), timedelta(minutes=1))
    assert (five_ago.succeeded, five_ago.failed) == (4, 0)
    assert (context["finished_since"], context["failed_since"]) == (4, 0)
    assert context["day_finished"] == 5 and context["day_failed"] == 1  # not 2 days ago

    durations = {name: (n, ps) for name, n, ps in context["durations"]}
    assert set(durations) == {"shop:a", "shop:b"}  # shop:old is older than a day
    n, ps = durations["shop:a"]
    assert n == 4 and ps == pytest.approx((2.5, 3.85, 3.97), abs=1e-3)
    assert durations["shop:b"] == (1, pytest.approx((10, 10, 10), abs=1e-3))
    assert context["durations"][0][0] == "shop:a"  # busiest first

    hour = str(context["hour_chart"])
    assert hour.startswith('<svg id="bgp-chart-hour"')
    assert "jobs finished per minute" in hour and "time (UTC)" in hour  # axis titles
    assert ">succeeded</text>" in hour and ">failed</text>" in hour  # legend
    assert f"<title>{five_ago.start:%H:%M} UTC: 4 succeeded, 0 failed</title>" in hour
    day = str(context["day_chart"])
    assert "jobs finished per hour" in day
    three_ago = now - timedelta(hours=3)
    assert f"<title>{three_ago:%H}:00 UTC: 0 succeeded, 1 failed</title>" in day
    runs = str(context["duration_chart"])
    assert "<title>shop:a: p50 2.5s, p95 3.85s, p99 3.97s (4 jobs)</title>" in runs
    assert ">p50</text>" in runs and ">p99</text>" in runs and "log scale" in runs


def test_an_empty_store(alias):
    context = dashboard_context(using=alias)
    assert context["states"] == [] and context["queues"] == [] and context["total"] == 0
    assert sum(b["bucket"].succeeded + b["bucket"].failed for b in context["buckets"]) == 0
    assert context["durations"] == [] and context["duration_chart"] is None
    assert "<svg" in str(context["hour_chart"]) and "<svg" in str(context["day_chart"])


def test_a_store_with_only_old_jobs(alias):
    long_ago = utcnow() - timedelta(days=30)
    for state in ("Succeeded", "Failed", "Succeeded"):
        add_job(alias, "shop:old", "q-old", state, long_ago, long_ago + timedelta(seconds=3),
                run=2)
    context = dashboard_context(using=alias)
    assert dict(context["states"]) == {"Succeeded": 2, "Failed": 1}
    assert context["finished_since"] == 0 and context["day_finished"] == 0
    assert context["durations"] == []
    assert "1 failed</title>" not in str(context["day_chart"])


@pytest.fixture
def root():
    client = Client()
    client.force_login(get_user_model().objects.create_superuser(
        f"root-{uuid.uuid4().hex[:6]}", password="pw"))
    return client


@django_db_mark("default")
def test_the_page_is_a_live_console_page(root):
    known_jobs("default", utcnow())
    page = root.get(DASHBOARD).content.decode()
    for part in ('id="bgp-states"', 'id="bgp-queues"', 'id="bgp-throughput"',
                 'id="bgp-chart-day"', 'id="bgp-chart-durations"', 'class="bgp-nav"',
                 f'data-bgp-live="{DASHBOARD}?part=now"', f'data-bgp-live="{DASHBOARD}?part=day"',
                 'aria-current="page">Dashboard</a>', "celery_bgp/console.js"):
        assert part in page, part


@django_db_mark("default")
def test_a_live_refresh_answers_the_fragment_then_304_until_a_job_changes(root, monkeypatch):
    known_jobs("default", utcnow())
    response = root.get(f"{DASHBOARD}?part=now", headers=LIVE)
    assert response.status_code == 200
    fragment = response.content.decode()
    assert 'id="bgp-states"' in fragment and 'id="bgp-queues"' in fragment
    assert 'id="bgp-throughput"' in fragment
    assert "<html" not in fragment and "bgp-nav" not in fragment
    assert "bgp-chart-day" not in fragment
    tag = response["ETag"]
    assert response["Cache-Control"] == "private, no-cache"  # kept, but asked again

    add_job("default", "shop:new", "q-new", "Enqueued", utcnow())
    young = root.get(f"{DASHBOARD}?part=now", headers={**LIVE, "If-None-Match": tag})
    assert young.status_code == 304  # younger than MIN_AGE: not recomputed, even so

    monkeypatch.setitem(admin_dashboard.MIN_AGE, "now", 0)
    changed = root.get(f"{DASHBOARD}?part=now", headers={**LIVE, "If-None-Match": tag})
    assert changed.status_code == 200 and "q-new" in changed.content.decode()
    for _ in range(2):  # twice: the minute may turn between two requests
        tag = changed["ETag"]
        changed = root.get(f"{DASHBOARD}?part=now", headers={**LIVE, "If-None-Match": tag})
        if changed.status_code == 304:
            break
    assert changed.status_code == 304  # nothing written since

    day = root.get(f"{DASHBOARD}?part=day", headers=LIVE).content.decode()
    assert 'id="bgp-chart-day"' in day and 'id="bgp-chart-durations"' in day
    assert "bgp-states" not in day


@django_db_mark("default")
def test_the_dashboard_and_its_refresh_need_the_view_permission():
    denied = staff_with()
    assert denied.get(DASHBOARD).status_code == 403
    assert denied.get(f"{DASHBOARD}?part=now", headers=LIVE).status_code == 403
    assert staff_with("view_job").get(f"{DASHBOARD}?part=now", headers=LIVE).status_code == 200


@django_db_mark("default")
def test_postgresql_counts_a_big_table_by_index_up_to_a_cap(monkeypatch):
    """Above BIG_TABLE rows: exact per (queue, state) up to CELL_CAP, "n+" above, and the
    planner's statistics for the totals of the capped states."""
    require_database("default")
    known_jobs("default", utcnow())
    with connections["default"].cursor() as cursor:
        cursor.execute(f'ANALYZE "{Job._meta.db_table}"')
    monkeypatch.setattr(dashboard_stats, "BIG_TABLE", 0)
    monkeypatch.setattr(dashboard_stats, "CELL_CAP", 2)
    counts = dashboard_stats.job_counts("default")
    cell = counts.queues["q-a"]["Succeeded"]
    assert cell == 2 and cell.at_least and cell.label() == "2+"
    assert counts.queues["q-a"]["Enqueued"] == 2 and counts.queues["q-a"]["Enqueued"].exact
    assert counts.states["Succeeded"] == 5 and counts.states["Succeeded"].estimated
    assert counts.states["Succeeded"].label() == "≈ 5"
    assert counts.states["Executing"] == 1 and counts.states["Executing"].exact
    assert counts.queue_totals["q-b"] == 2 and counts.queue_totals["q-b"].exact
    assert counts.queue_totals["q-a"] == 7 and counts.queue_totals["q-a"].estimated
    assert not counts.total.exact and counts.total == 9
    assert "q-a" in counts.oldest_waiting
