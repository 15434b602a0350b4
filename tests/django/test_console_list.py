"""The console's job list and job page on PostgreSQL, as an operator relies on them:
progress reported from a job's context and shown with an ETA, a substring search on
names, live refreshes that cost a probe (204) unless something changed and keep the
filters, and the job actions written to each job's admin History. The load of a live
list over a minute is measured against its first render."""
from __future__ import annotations

import html
import json
import re
import time
import uuid
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.admin.utils import quote
from django.db import connection
from django.test.utils import CaptureQueriesContext

from celery_bgp.commands import utcnow
from celery_bgp.contrib.django.models import Job
from celery_bgp.jobs import CancellationToken, Executing
from tests.apps import jobs as J
from tests.apps.admin_app import bgp
from tests.helpers.admin import superuser

pytestmark = pytest.mark.django_db

LIST = "/admin/celery_bgp/job/"
LIVE = {"HTTP_X_BGP_LIVE": "1"}


@pytest.fixture(autouse=True)
def admin_engine(settings, redis_base):
    settings.CELERY_BGP_INSTANCE = "tests.apps.admin_app.bgp"


@pytest.fixture
def root(db):
    return superuser()


@pytest.fixture
def queue():
    return f"console-{uuid.uuid4().hex[:8]}"


def running_job(queue: str) -> str:
    job_id = bgp.jobs.submit(J.slow, args=[30], queue=queue)
    holder = "worker-1@test"
    assert bgp.jobs.store.acquire_lock(job_id, holder, timeout=60)
    bgp.jobs.machine.change(job_id, Executing(worker=holder, execution_id="e1"), holder=holder)
    return job_id


def context_of(job_id: str):
    return bgp.jobs.context(bgp.jobs.get(job_id), CancellationToken())


def live_url(page: str) -> str:
    found = re.search(r'data-bgp-live="([^"]+)"', page)
    assert found, "the page has a live part"
    return html.unescape(found.group(1))


def data_writes(queries) -> int:
    return sum(1 for q in queries if "celery_bgp_jobdata" in q["sql"]
               and q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE")))


# -- progress ------------------------------------------------------------------------------


def test_progress_in_a_tight_loop_writes_rarely_and_keeps_the_last_report(queue):
    job_id = running_job(queue)
    context = context_of(job_id)
    with CaptureQueriesContext(connection) as queries:
        started = time.monotonic()
        for done in range(1, 2001):
            context.progress(done, None, message=f"row {done}")
        spent = time.monotonic() - started
    # One write per 0.5 s at most (the first call writes at once).
    assert data_writes(queries) <= 1 + spent / context.PROGRESS_INTERVAL + 1
    context.flush_progress()  # what the worker does as the job ends
    stored = bgp.jobs.data(job_id)["progress"]
    assert stored["done"] == 2000 and stored["total"] is None
    assert stored["message"] == "row 2000" and stored["at"]
    context.progress(7, 7)  # completing the total is written at once
    assert bgp.jobs.data(job_id)["progress"]["done"] == 7


def test_the_list_and_the_job_page_show_the_bar_and_an_eta(root, queue):
    job_id = running_job(queue)
    others = [running_job(queue) for _ in range(3)]
    context_of(job_id).progress(25, 100, message="copying invoices")
    for n, other in enumerate(others):
        context_of(other).progress(n + 1, 10)
    with CaptureQueriesContext(connection) as queries:
        page = root.get(f"{LIST}?queue={queue}").content.decode()
    assert page.count('<progress class="bgp-progress" max="100" value="25"') == 1
    assert "copying invoices" in page and "left" in page  # message and ETA in the title
    reads = [q for q in queries if "celery_bgp_jobdata" in q["sql"]]
    assert len(reads) == 1, "one query for the page's progress, not one per row"
    assert f'title="{job_id}">{job_id[:8]}<' in page  # the short id, full id in its title

    detail = root.get(f"{LIST}{quote(job_id)}/change/").content.decode()
    status = detail[detail.index('id="bgp-live-status"'):detail.index('id="bgp-timeline"')]
    assert 'value="25"' in status and "copying invoices" in status
    assert re.search(r"about [\d.]+\w* left", status), status


# -- search --------------------------------------------------------------------------------


def test_a_name_is_found_by_any_part_of_it_in_any_case(root, queue):
    slow = bgp.jobs.submit(J.slow, args=[1], queue=queue, idle=True)
    add = bgp.jobs.submit(J.add, args=[1, 2], queue=queue, idle=True)
    page = root.get(f"{LIST}?queue={queue}&q=SLO").content.decode()
    assert slow in page and add not in page
    page = root.get(f"{LIST}?queue={queue}&q=jobs:ad").content.decode()
    assert add in page and slow not in page


# -- live ----------------------------------------------------------------------------------


def test_the_live_list_answers_204_until_a_job_of_it_changes_and_keeps_its_filters(
        root, queue):
    waiting = [bgp.jobs.submit(J.add, args=[n, n], queue=queue) for n in range(3)]
    time.sleep(SLACK_WAIT)  # what the page shows is older than the probe's slack
    page = root.get(f"{LIST}?queue={queue}&state=Enqueued&o=-1").content.decode()
    url = live_url(page)
    assert f"queue={queue}" in url and "state=Enqueued" in url and "o=-1" in url
    assert root.get(url, **LIVE).status_code == 204

    # A job leaves the filtered list (it starts): the rows are rendered again without it.
    holder = "w@test"
    assert bgp.jobs.store.acquire_lock(waiting[0], holder, timeout=60)
    bgp.jobs.machine.change(waiting[0], Executing(worker=holder, execution_id="x"),
                            holder=holder)
    response = root.get(url, **LIVE)
    assert response.status_code == 200
    rows = response.content.decode()
    assert waiting[0] not in rows and waiting[1] in rows and waiting[2] in rows
    assert 'id="result_list"' in rows and "<html" not in rows  # only the table
    assert f"_changelist_filters=queue%3D{queue}" in rows  # row links keep the filters
    following = response["X-BGP-Live-Url"]
    assert "state=Enqueued" in following
    assert root.get(following, **LIVE).status_code == 204  # that change is shown now

    # A new job that matches appears.
    newcomer = bgp.jobs.submit(J.add, args=[9, 9], queue=queue)
    response = root.get(following, **LIVE)
    assert response.status_code == 200 and newcomer in response.content.decode()


def test_a_running_job_page_gets_its_new_log_lines_and_state_alone(root, queue):
    job_id = running_job(queue)
    context = context_of(job_id)
    context.progress(1, 4)
    page = root.get(f"{LIST}{quote(job_id)}/change/").content.decode()
    url = live_url(page)
    assert root.get(url, **LIVE).status_code == 204

    context.info("step one")
    response = root.get(url, **LIVE)
    assert response.status_code == 200 and response["X-BGP-Live-Parts"] == "1"
    parts = response.content.decode()
    assert 'data-bgp-part="bgp-log-lines" data-bgp-append' in parts and "step one" in parts
    assert "bgp-live-status" not in parts  # the state did not change
    url = response["X-BGP-Live-Url"]
    assert root.get(url, **LIVE).status_code == 204  # the line is not sent twice

    time.sleep(context.PROGRESS_INTERVAL)  # else the report waits for the next one
    context.progress(3, 4, message="almost")
    parts = root.get(url, **LIVE).content.decode()
    assert 'data-bgp-part="bgp-live-status"' in parts and 'value="75"' in parts


# -- history -------------------------------------------------------------------------------


def test_actions_from_the_list_and_a_job_page_are_in_the_jobs_history(root, queue):
    failed = bgp.jobs.submit(J.fail, args=["no"], queue=queue)
    bgp.job_task.apply((failed, bgp.jobs.get(failed).execution_id))
    waiting = bgp.jobs.submit(J.add, args=[1, 1], queue=queue, idle=True)
    response = root.post(LIST, {"action": "requeue_jobs", "_selected_action": [failed],
                                "post": "yes", "index": 0})
    assert response.status_code == 302
    page = f"{LIST}{quote(waiting)}/change/"
    response = root.post(LIST, {"action": "delete_jobs", "_selected_action": [waiting],
                                "post": "yes", "_return": page, "index": 0})
    assert response.status_code == 302 and response["Location"] == page

    entries = {e.object_id: e for e in LogEntry.objects.filter(object_id__in=[failed, waiting])}
    assert "Requeued" in entries[failed].get_change_message()
    assert "Deleted" in entries[waiting].get_change_message()
    assert entries[failed].user.username == "root"
    history = root.get(f"{LIST}{quote(failed)}/history/").content.decode()
    assert "Requeued through the admin action" in history


# -- load ----------------------------------------------------------------------------------


def _population(queue: str, count: int) -> list[str]:
    """``count`` finished jobs (rows only: the load is the point, not how they ran)."""
    now = utcnow()
    rows = [Job(id=f"{queue}-{n:05d}", name=f"tests.apps.jobs:batch_{n % 7}", queue=queue,
                state="Succeeded" if n % 10 else "Failed",
                created=now - timedelta(seconds=count - n),
                modified=now - timedelta(seconds=count - n) + timedelta(milliseconds=200))
            for n in range(count)]
    Job.objects.bulk_create(rows, batch_size=1000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE celery_bgp_job")
    return [row.id for row in rows]


class Timed:
    """Every query the database answers meanwhile: its round trip (perf_counter) and,
    by :meth:`settle`, the server's own planning and execution time (EXPLAIN ANALYZE of
    the same statement right after the request, the best of three), the database's load without the
    network and the driver."""

    def __init__(self) -> None:
        self.queries: list[dict] = []
        self.settling = False

    def __call__(self, execute, sql, params, many, context):
        if self.settling:
            return execute(sql, params, many, context)
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.queries.append({"sql": sql, "params": params, "server": None,
                                 "trip": time.perf_counter() - started})

    def __enter__(self) -> Timed:
        self._wrapped = connection.execute_wrapper(self)
        self._wrapped.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._wrapped.__exit__(*exc)

    def settle(self) -> None:
        """Measure the server time of the reads captured so far (not yet measured)."""
        self.settling = True
        with connection.cursor() as cursor:
            for query in list(self.queries):
                if query["server"] is not None:
                    continue
                best = float("inf")
                for _ in range(3):  # the best of three: the same work, less noise
                    cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {query['sql']}",
                                   query["params"])
                    plan = cursor.fetchone()[0]
                    plan = plan[0] if isinstance(plan, list) else json.loads(plan)[0]
                    best = min(best, plan["Planning Time"] + plan["Execution Time"])
                query["server"] = best / 1000
        self.settling = False

    def load(self, own: bool = False) -> tuple[int, float, float]:
        """Count, round-trip and server milliseconds (``own``: without Django's session
        and user lookups, which every admin request makes)."""
        found = [q for q in self.queries
                 if not (own and re.search(r'"(django_session|auth_user)"', q["sql"]))]
        return (len(found), sum(q["trip"] for q in found) * 1000,
                sum(q["server"] for q in found) * 1000)


def test_a_live_list_loads_the_database_less_in_a_minute_than_its_first_render(
        root, queue, record_property):
    assert connection.vendor == "postgresql"
    # Big enough that the first render's exact count outweighs the probes by a margin that
    # noise does not cross (at 8,000 jobs it was 1.3-1.7 ms against 0.9-1.0 ms).
    _population(queue, 30000)
    running = running_job(queue)
    context = context_of(running)
    context.progress(1, 10)
    time.sleep(SLACK_WAIT)
    # The list of the queue's jobs, as an operator watches it (one running job on it).
    with Timed() as first:
        page = root.get(f"{LIST}?queue={queue}").content.decode()
    first.settle()
    url = live_url(page)
    answers = []
    with Timed() as refreshes:
        for tick in range(12):  # a minute at 5 s
            if tick in (4, 8):  # two changes in that minute: progress, a new job
                refreshes.settling = True  # the changes' writes are not the page's load
                time.sleep(context.PROGRESS_INTERVAL)
                context.progress(tick, 10)
                if tick == 8:
                    bgp.jobs.submit(J.add, args=[1, 1], queue=queue, idle=True)
                refreshes.settling = False
            response = root.get(url, **LIVE)
            answers.append((response.status_code, response.get("X-BGP-Live-Parts")))
            url = response.get("X-BGP-Live-Url", url)
            refreshes.settle()
    # Progress alone: only its bar is sent (from the probe); a new job: the rows.
    assert answers[4] == (200, "1") and answers[8] == (200, None), answers
    assert [a for n, a in enumerate(answers) if n not in (4, 8)] == [(204, None)] * 10
    first_n, first_trip, first_server = first.load()
    live_n, live_trip, live_server = refreshes.load()
    own_first = first.load(own=True)
    own_live = refreshes.load(own=True)
    figures = (
        f"first render: {first_n} queries, {first_trip:.2f} ms round trip, "
        f"{first_server:.2f} ms server; 12 refreshes with 2 changes: {live_n} queries, "
        f"{live_trip:.2f} ms round trip, {live_server:.2f} ms server. Without Django's "
        f"session and user lookups: first {own_first[0]} queries {own_first[1]:.2f} ms "
        f"trip {own_first[2]:.2f} ms server; refreshes {own_live[0]} queries "
        f"{own_live[1]:.2f} ms trip {own_live[2]:.2f} ms server")
    print(figures)
    record_property("live_load", figures)
    assert own_live[2] <= own_first[2], figures


#: Seconds to wait after a render so that the probe's slack is behind it.
SLACK_WAIT = 2.1
