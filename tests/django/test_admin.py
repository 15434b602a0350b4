"""The job admin on PostgreSQL: every page, filter and search, the actions through the job
engine (messages really sent to Redis, a real worker running a requeued job), the
confirmation page, permissions, bounded queries and the estimated count."""
from __future__ import annotations

import html
import json
import re
import uuid
from datetime import timedelta

import pytest
from django.contrib.admin.utils import quote, unquote
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from celery_bgp.commands import utcnow
from celery_bgp.contrib.django import admin_actions
from celery_bgp.contrib.django.models import Job, JobState
from celery_bgp.jobs import Executing
from tests.apps import jobs as J
from tests.apps.admin_app import bgp
from tests.helpers.admin import staff_with, superuser

pytestmark = pytest.mark.django_db

LIST = "/admin/celery_bgp/job/"
DASHBOARD = "/admin/celery_bgp/job/dashboard/"


def detail(job_id: str) -> str:
    return f"{LIST}{quote(job_id)}/change/"


@pytest.fixture(autouse=True)
def admin_engine(settings, redis_base):
    """The admin steers jobs through tests.apps.admin_app (Redis broker, Django store)."""
    settings.CELERY_BGP_INSTANCE = "tests.apps.admin_app.bgp"


@pytest.fixture
def root(db):
    return superuser()


@pytest.fixture
def queue():
    return f"admin-{uuid.uuid4().hex[:8]}"


def run(job_id: str) -> Job:
    """Execute the job in this process, as a worker would (the real task body)."""
    bgp.job_task.apply((job_id, bgp.jobs.get(job_id).execution_id))
    return Job.objects.get(pk=job_id)


def failed_job(queue: str, message: str = "card declined", **kw) -> str:
    job_id = bgp.jobs.submit(J.fail, args=[message], queue=queue, **kw)
    assert run(job_id).state == "Failed"
    return job_id


def text(response) -> str:
    return response.content.decode()


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def sent_ids(redis_base: str, queue: str) -> list[str]:
    """Task ids of the messages waiting in a Redis queue (what the broker really holds)."""
    import redis

    from tests.conftest import BROKER_DB

    client = redis.Redis.from_url(f"{redis_base}/{BROKER_DB}")
    lists = [queue, *(f"{queue}\x06\x16{step}" for step in range(10))]  # priority steps
    return [json.loads(raw)["headers"]["id"] for name in lists
            for raw in client.lrange(name, 0, -1)]


# -- the list ---------------------------------------------------------------------------


@pytest.fixture
def population(queue):
    """A failed, a succeeded, an enqueued job and a high-priority one, with properties."""
    jobs = {
        "failed": failed_job(queue, properties={"order": "A-1002", "tenant": "acme"}),
        "succeeded": bgp.jobs.submit(J.add, args=[1, 2], queue=queue,
                                     properties={"order": "B-7"}),
        "waiting": bgp.jobs.submit(J.add, args=[2, 3], queue=f"{queue}-other",
                                   properties={"tenant": "globex"}),
        "urgent": bgp.jobs.submit(J.record, args=["k", "v"], queue=queue, priority="CRITICAL",
                                  idle=True),
    }
    run(jobs["succeeded"])
    return jobs


def listed(response) -> set[str]:
    """Job ids on a list page (the links of the id column)."""
    found = re.findall(r'/admin/celery_bgp/job/([^/"]+)/change/', text(response))
    return {unquote(pk) for pk in found}


def test_the_list_shows_the_columns(root, population, queue):
    response = root.get(LIST)
    assert response.status_code == 200
    page = text(response)
    assert listed(response) == set(population.values())
    assert 'class="bgp-state" style="background:#c62828">Failed' in page
    assert ">CRITICAL<" in page and ">NORMAL<" in page
    assert "tests.apps.jobs:fail" in page and queue in page
    assert "Dashboard" in page and DASHBOARD in page
    assert "Add job" not in page
    assert re.search(r'class="field-duration">\d+\.\d\ds<', page)  # ran: a duration
    assert re.search(r'class="field-worker_display">[^<—]+<', page)  # the worker that ran it


@pytest.mark.parametrize(("query", "expected"), [
    ("state=Failed", ["failed"]),
    ("state=Enqueued", ["waiting"]),
    ("priority=0", ["urgent"]),
    ("name=tests.apps.jobs:add", ["succeeded", "waiting"]),
    ("environment=default", ["failed", "succeeded", "waiting", "urgent"]),
    ("QUEUE-other", ["waiting"]),
    ("q=A-1002", ["failed"]),  # a property value
    ("q=A-10", ["failed"]),  # its prefix
    ("q=order%3DB-7", ["succeeded"]),  # property=value
    ("q=tenant%3Dglo*", ["waiting"]),  # property=prefix*
    ("q=tests.apps.jobs:rec", ["urgent"]),  # a name prefix
    ("q=acme-not-there", []),
])
def test_each_filter_and_search(root, population, queue, query, expected):
    query = query.replace("QUEUE", f"queue={queue}")
    response = root.get(f"{LIST}?{query}")
    assert response.status_code == 200
    assert listed(response) == {population[name] for name in expected}


def test_a_bare_term_searches_a_bounded_number_of_property_matches(root, queue, monkeypatch):
    from celery_bgp.contrib.django import admin as job_admin
    from celery_bgp.contrib.django import admin_search

    monkeypatch.setattr(admin_search, "MAX_PROPERTY_MATCHES", 2)
    monkeypatch.setattr(job_admin, "MAX_PROPERTY_MATCHES", 2)
    ids = [bgp.jobs.submit(J.add, args=[n, n], queue=queue, idle=True,
                           properties={"batch": f"night-{n}"}) for n in range(3)]
    response = root.get(f"{LIST}?q=night-")
    assert len(listed(response)) == 2
    assert "More than 2 jobs have a property value starting with “night-”" in " ".join(
        messages_of(response))
    response = root.get(f"{LIST}?q=batch%3Dnight-*")  # NAME=VALUE: every match
    assert listed(response) == set(ids)
    assert messages_of(response) == []


def test_a_search_count_stops_at_the_limit(root, queue, monkeypatch):
    from celery_bgp.contrib.django import admin as job_admin

    monkeypatch.setattr(job_admin, "SEARCH_COUNT_LIMIT", 2)
    for n in range(3):
        bgp.jobs.submit(J.add, args=[n, n], queue=queue, idle=True, properties={"lot": "L1"})
    response = root.get(f"{LIST}?q=lot%3DL1")
    assert response.context["cl"].result_count == 2
    assert "More than 2 jobs match" in text(response)
    response = root.get(f"{LIST}?queue={queue}")  # a filter, no search: counted exactly
    assert response.context["cl"].result_count == 3
    assert "More than" not in text(response)


def test_search_results_are_newest_first(root, queue):
    ids = [bgp.jobs.submit(J.add, args=[n, n], queue=queue, idle=True,
                           properties={"ticket": f"T-77{n}"}) for n in range(3)]
    for query in ("T-77", "ticket%3DT-77*"):
        page = text(root.get(f"{LIST}?q={query}"))
        shown = [unquote(pk) for pk in re.findall(r'/job/([^/"]+)/change/', page)]
        assert shown == ids[::-1], query


def test_search_by_id_prefix_and_the_filter_choices(root, population, queue):
    job_id = population["failed"]
    assert listed(root.get(f"{LIST}?q={job_id[:8]}")) >= {job_id}
    page = text(root.get(LIST))
    for choice in (f"?queue={queue}", f"?queue={queue}-other", "?state=Awaiting",
                   "?priority=4", "?name=tests.apps.jobs%3Arecord", "?created__gte="):
        assert choice in page, choice


def test_date_filter(root, population):
    page = text(root.get(LIST))
    today = re.search(r'<a href="(\?created__gte=[^"]+)"[^>]*>Today</a>', page)
    assert today, "the date filter offers Today"
    response = root.get(LIST + html.unescape(today.group(1)))
    assert listed(response) == set(population.values())
    month_ago = (utcnow() - timedelta(days=30)).isoformat()
    response = root.get(LIST, {"created__lt": month_ago})
    assert listed(response) == set()


# -- a job's page -----------------------------------------------------------------------


def test_a_failed_job_shows_its_exception_timeline_and_actions(root, queue):
    job_id = failed_job(queue, "card declined for order A-1002")
    response = root.get(detail(job_id))
    assert response.status_code == 200
    page = text(response)
    failure = page[page.index('id="bgp-failure"'):page.index('id="bgp-timeline"')]
    assert "ValueError" in failure and "card declined for order A-1002" in failure
    assert "Traceback (most recent call last)" in failure and "raise ValueError" in failure
    timeline = page[page.index('id="bgp-timeline"'):page.index('id="bgp-logs"')]
    assert [m for m in re.findall(r">(\w+)</span>", timeline)] == [
        "Created", "Enqueued", "Executing", "Failed"]
    for button in ("bgp_requeue", "bgp_cancel", "bgp_delete"):
        assert f'name="{button}"' in page
    assert 'name="_save"' not in page  # read-only
    assert "/delete/" not in page


def test_a_succeeded_job_shows_result_logs_properties_data_and_its_task_result(root, queue):
    from django_celery_results.models import TaskResult

    job_id = bgp.jobs.submit(J.uses_context, args=["invoice-42"], queue=queue)
    run(job_id)
    task = TaskResult.objects.create(task_id=job_id, status="SUCCESS")
    page = text(root.get(detail(job_id)))
    assert 'id="bgp-failure"' not in page
    assert "invoice-42" in page  # args, result and the label property
    logs = page[page.index('id="bgp-logs"'):page.index('id="bgp-properties"')]
    assert "working on invoice-42" in logs and "almost done" in logs
    assert "WARNING" in logs and "INFO" in logs
    props = page[page.index('id="bgp-properties"'):]
    assert "label" in props and "size" in props and "progress" in props
    assert f"/admin/django_celery_results/taskresult/{task.pk}/change/" in page


def test_continuations_link_parent_and_child(root, queue):
    parent = bgp.jobs.submit(J.add, args=[1, 1], queue=queue)
    child = bgp.jobs.submit(J.add, args=[2, 2], queue=queue, after=(parent, "succeeded"))
    run(parent)
    child_page = text(root.get(detail(child)))
    assert "runs after" in child_page and detail(parent) in child_page
    parent_page = text(root.get(detail(parent)))
    assert "then runs" in parent_page and detail(child) in parent_page
    assert "succeeded" in parent_page


def test_no_adding_no_editing_no_row_deletes(root, queue):
    job_id = failed_job(queue)
    assert root.get(f"{LIST}add/").status_code == 403
    response = root.get(f"{LIST}{quote(job_id)}/delete/", follow=True)
    assert "through the job engine" in " ".join(messages_of(response))
    assert Job.objects.filter(pk=job_id).exists()
    response = root.post(detail(job_id), {"name": "changed"})
    assert response.status_code == 403
    assert Job.objects.get(pk=job_id).name == "tests.apps.jobs:fail"


# -- the dashboard ----------------------------------------------------------------------


def test_the_dashboard_counts_states_queues_waiting_and_throughput(root, population, queue):
    response = root.get(DASHBOARD)
    assert response.status_code == 200
    context = response.context
    states = dict(context["states"])
    assert (states["Failed"], states["Succeeded"], states["Enqueued"], states["Idle"]) == (
        1, 1, 1, 1)
    rows = {row.queue: row for row in context["queues"]}
    assert rows[queue].total == 3 and rows[f"{queue}-other"].total == 1
    waiting = rows[f"{queue}-other"]
    assert waiting.oldest_waiting == Job.objects.get(pk=population["waiting"]).created
    assert 0 <= waiting.waiting_seconds < 60
    assert rows[queue].oldest_waiting is None
    last = context["buckets"][-1]["bucket"]
    assert (last.succeeded, last.failed) == (1, 1)
    assert sum(b["bucket"].succeeded for b in context["buckets"]) == 1
    assert context["finished_since"] == 2
    assert context["has_poison"] is False  # a Redis broker has no poison queues
    page = text(response)
    assert f"?queue={queue}-other" in page and "?state=Failed" in page


def test_the_dashboard_needs_the_view_permission(db):
    assert staff_with().get(DASHBOARD).status_code == 403
    assert staff_with("view_job").get(DASHBOARD).status_code == 200


# -- actions ----------------------------------------------------------------------------


def act(client: Client, action: str, ids: list[str], confirm: bool = True, **extra):
    data = {"action": action, "_selected_action": ids, **extra}
    if confirm:
        data["post"] = "yes"
    return client.post(LIST, data, follow=confirm)


def test_requeue_asks_first_then_enqueues_and_sends(root, queue, redis_base,
                                                    django_capture_on_commit_callbacks):
    job_id = failed_job(queue)
    response = act(root, "requeue_jobs", [job_id], confirm=False, index=0)
    assert response.status_code == 200
    page = text(response)
    assert "Requeue 1 job?" in page and job_id in page and 'value="yes"' in page
    assert Job.objects.get(pk=job_id).state == "Failed"  # nothing done yet
    with django_capture_on_commit_callbacks(execute=True):
        response = act(root, "requeue_jobs", [job_id])
    assert messages_of(response) == [f"Requeued 1 job: {job_id}."]
    job = Job.objects.get(pk=job_id)
    assert job.state == "Enqueued"
    last = JobState.objects.filter(job_id=job_id).order_by("-sequence").first()
    assert last.reason == "requeued by root in the admin"
    assert sent_ids(redis_base, queue) == [job_id]


def running_job(queue: str) -> str:
    """A job some worker runs (Executing, locked by that worker)."""
    job_id = bgp.jobs.submit(J.slow, args=[30], queue=queue)
    holder = "worker-1@test"
    assert bgp.jobs.store.acquire_lock(job_id, holder, timeout=60)
    bgp.jobs.machine.change(job_id, Executing(worker=holder, execution_id="e1"), holder=holder)
    return job_id


@pytest.fixture
def broadcasts(monkeypatch):
    """The cancels Jobs.cancel sends to the workers (job id, terminate), not sent."""
    from celery_bgp.jobs import cancelling

    sent: list[tuple[str, bool]] = []
    monkeypatch.setattr(cancelling, "send_cancel",
                        lambda _bgp, job_id, terminate=False: sent.append((job_id, terminate)))
    return sent


def test_cancel_enqueued_and_running_jobs(root, queue, broadcasts,
                                          django_capture_on_commit_callbacks):
    waiting = bgp.jobs.submit(J.add, args=[1, 2], queue=queue)
    running = running_job(queue)
    with django_capture_on_commit_callbacks(execute=True):
        response = act(root, "cancel_jobs", [waiting, running])
    assert messages_of(response) == [  # the truth: one is Cancelled, the other asked to stop
        f"Cancelled 1 job: {waiting}.",
        f"Cancel requested for 1 running job: {running}. It becomes Cancelled when it stops."]
    assert Job.objects.get(pk=waiting).state == "Cancelled"
    asked = Job.objects.get(pk=running)
    assert asked.state == "Executing" and asked.cancel_requested is not None
    assert bgp.jobs.store.cancel_requested(running)
    assert broadcasts == [(running, False)]  # sent after the commit, to the workers
    page = text(root.get(detail(running)))
    assert "cancel requested" in page
    assert "cancel requested" not in text(root.get(detail(waiting)))


def test_cancel_offers_to_terminate_running_jobs(root, queue, broadcasts,
                                                 django_capture_on_commit_callbacks):
    running = running_job(queue)
    page = text(act(root, "cancel_jobs", [running], confirm=False, index=0))
    assert 'name="terminate"' in page and "kill the worker process" in page
    assert 'name="terminate"' not in text(act(root, "delete_jobs", [running], confirm=False,
                                              index=0))
    with django_capture_on_commit_callbacks(execute=True):
        response = act(root, "cancel_jobs", [running], terminate="1")
    assert messages_of(response) == [
        f"Terminate requested for 1 running job: {running}. It becomes Cancelled when it stops."]
    assert broadcasts == [(running, True)]


def test_delete_moves_jobs_to_deleted(root, queue):
    job_id = failed_job(queue)
    response = act(root, "delete_jobs", [job_id])
    assert messages_of(response) == [f"Deleted 1 job: {job_id}."]
    assert Job.objects.get(pk=job_id).state == "Deleted"


def test_jobs_that_cannot_take_the_action_are_reported(root, queue):
    failed = failed_job(queue)
    locked = bgp.jobs.submit(J.add, args=[1, 2], queue=queue)
    assert bgp.jobs.store.acquire_lock(locked, "someone-else", timeout=60)
    response = act(root, "cancel_jobs", [failed, locked])
    notes = messages_of(response)
    assert len(notes) == 2
    assert f"Job {failed} was not cancelled: TransitionNotAllowed" in notes[0] + notes[1]
    assert f"Job {locked} was not cancelled: JobLocked" in notes[0] + notes[1]
    assert "locked by someone-else" in " ".join(notes)
    assert Job.objects.get(pk=failed).state == "Failed"
    assert Job.objects.get(pk=locked).state == "Enqueued"


def test_bulk_actions_confirm_the_whole_selection(root, queue,
                                                  django_capture_on_commit_callbacks,
                                                  redis_base):
    ids = [failed_job(queue, f"no {n}") for n in range(3)]
    response = root.post(f"{LIST}?state=Failed&queue={queue}",
                         {"action": "requeue_jobs", "index": 0, "select_across": 1,
                          "_selected_action": ids[:1]})
    page = text(response)
    assert "Requeue 3 jobs?" in page
    assert all(page.count(f'name="_selected_action" value="{i}"') == 1 for i in ids)
    assert set(Job.objects.filter(pk__in=ids).values_list("state", flat=True)) == {"Failed"}
    with django_capture_on_commit_callbacks(execute=True):
        response = act(root, "requeue_jobs", ids)
    assert messages_of(response)[0].startswith("Requeued 3 jobs: ")
    assert sorted(sent_ids(redis_base, queue)) == sorted(ids)


def test_a_selection_over_the_limit_is_refused(root, queue, monkeypatch):
    monkeypatch.setattr(admin_actions, "MAX_JOBS", 2)
    ids = [failed_job(queue, f"no {n}") for n in range(3)]
    response = act(root, "delete_jobs", ids)
    assert "Select at most 2 jobs" in messages_of(response)[0]
    assert set(Job.objects.filter(pk__in=ids).values_list("state", flat=True)) == {"Failed"}


def test_the_detail_page_buttons_come_back_to_the_job(root, queue):
    job_id = failed_job(queue)
    response = root.post(LIST, {"action": "delete_jobs", "_selected_action": job_id,
                                "_return": detail(job_id)})
    assert "Delete 1 job?" in text(response)
    assert f'name="_return" value="{detail(job_id)}"' in text(response)
    response = root.post(LIST, {"action": "delete_jobs", "_selected_action": job_id,
                                "_return": detail(job_id), "post": "yes"})
    assert response.status_code == 302 and response["Location"] == detail(job_id)
    response = root.post(LIST, {"action": "delete_jobs", "_selected_action": job_id,
                                "_return": "https://evil.example/", "post": "yes"})
    assert response["Location"] != "https://evil.example/"


@pytest.mark.parametrize("back", ["javascript:alert(document.cookie)", "JavaScript:alert(1)",
                                  " javascript:alert(1)", "//evil.example/admin/",
                                  "https://evil.example/", "http://evil.example/x",
                                  "/\\evil.example/", "data:text/html,<script>x</script>"])
def test_the_confirmation_page_links_back_only_to_this_site(root, queue, back):
    job_id = failed_job(queue)
    response = root.post(LIST, {"action": "delete_jobs", "_selected_action": job_id,
                                "_return": back})
    page = text(response)
    assert "Delete 1 job?" in page
    assert 'name="_return"' not in page  # not carried on to the redirect either
    links = re.findall(r'href="([^"]*)"[^>]*class="button cancel-link"', page)
    assert links == [LIST]  # "No, take me back": the changelist
    assert "evil.example" not in page and "javascript:" not in page.lower()
    response = root.post(LIST, {"action": "delete_jobs", "_selected_action": job_id,
                                "_return": back, "post": "yes"})
    assert response.status_code == 302 and response["Location"] == LIST


def test_the_confirmation_page_links_back_to_a_page_of_this_site(root, queue):
    job_id = failed_job(queue)
    back = f"{LIST}?state=Failed&queue={queue}"
    page = text(root.post(LIST, {"action": "delete_jobs", "_selected_action": job_id,
                                 "_return": back}))
    escaped = html.escape(back)
    assert re.findall(r'href="([^"]*)"[^>]*class="button cancel-link"', page) == [escaped]
    assert f'name="_return" value="{escaped}"' in page


def test_permissions(db, queue):
    job_id = failed_job(queue)
    viewer = staff_with("view_job")
    assert viewer.get(LIST).status_code == 200
    page = text(viewer.get(detail(job_id)))
    assert 'name="bgp_requeue"' not in page and 'name="bgp_cancel"' not in page
    assert "requeue_jobs" not in text(viewer.get(LIST))
    for action in ("requeue_jobs", "cancel_jobs", "delete_jobs"):
        assert act(viewer, action, [job_id], confirm=False, index=0).status_code == 403
        assert act(viewer, action, [job_id], follow=False).status_code == 403
    assert Job.objects.get(pk=job_id).state == "Failed"
    assert staff_with().get(LIST).status_code == 403  # no view permission at all
    requeuer = staff_with("view_job", "requeue_job")
    page = text(requeuer.get(detail(job_id)))
    assert 'name="bgp_requeue"' in page and 'name="bgp_delete"' not in page
    assert act(requeuer, "cancel_jobs", [job_id], confirm=False, index=0).status_code == 403
    act(requeuer, "requeue_jobs", [job_id])
    assert Job.objects.get(pk=job_id).state == "Enqueued"


# -- staying fast ----------------------------------------------------------------------


def add_rows(count: int, queue: str) -> None:
    """Jobs with a history, written directly (the list must not care how they came)."""
    now = utcnow()
    jobs, states = [], []
    for n in range(count):
        job_id = f"bulk-{queue}-{n:06d}"
        created = now - timedelta(seconds=n)
        jobs.append(Job(id=job_id, name=f"tests.apps.jobs:n{n % 7}", queue=queue,
                        state="Succeeded", created=created, modified=created, sequence=3,
                        worker="w1"))
        states += [JobState(job_id=job_id, sequence=1, name="Enqueued", elected=created),
                   JobState(job_id=job_id, sequence=2, name="Executing", elected=created,
                            data={"worker": "w1"}),
                   JobState(job_id=job_id, sequence=3, name="Succeeded", elected=created)]
    Job.objects.bulk_create(jobs, batch_size=1000)
    JobState.objects.bulk_create(states, batch_size=3000)


def list_queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def test_the_list_reads_a_bounded_number_of_queries(root, queue, django_assert_max_num_queries):
    add_rows(10, queue)
    few = list_queries(root, LIST)
    add_rows(600, f"{queue}-more")
    assert list_queries(root, LIST) == few  # no query per row
    with django_assert_max_num_queries(12):
        root.get(f"{LIST}?state=Succeeded&q=bulk")
    with django_assert_max_num_queries(12):
        assert root.get(f"{LIST}?p=3").status_code == 200


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the estimate is PostgreSQL's")
def test_an_unfiltered_list_above_the_threshold_shows_the_estimate(root, queue):
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO celery_bgp_job (id, name, kind, queue, priority, environment, state,"
            " created, modified, args, kwargs, middleware, options, attempt, sequence,"
            " life_order) SELECT 'est-' || g, 'tests.apps.jobs:add', 'callable', %s, 2,"
            " 'default', 'Succeeded', now() - g * interval '1 second', now(), '[]', '{}',"
            " '[]', '{}', 1, 1, '' FROM generate_series(1, 12000) g", [queue])
        cursor.execute("ANALYZE celery_bgp_job")
    with CaptureQueriesContext(connection) as captured:
        response = root.get(LIST)
    assert "count(*)" not in " ".join(q["sql"].lower() for q in captured)
    page = text(response)
    estimate = response.context["cl"].result_count
    assert abs(estimate - 12000) < 1200
    assert f"About {estimate} jobs: PostgreSQL's estimate" in page
    response = root.get(f"{LIST}?queue={queue}")  # filtered: exact
    assert response.context["cl"].result_count == 12000
    assert "PostgreSQL's estimate" not in text(response)


# -- with a real worker -----------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_failed_job_requeued_in_the_admin_succeeds_on_a_real_worker(redis_base):
    from tests.conftest import BROKER_DB, stack_env
    from tests.helpers.workers import WorkerProcess

    env = stack_env(f"{redis_base}/{BROKER_DB}", redis_base, f"admin-w-{uuid.uuid4().hex[:8]}")
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("night", password="pw"))
    with WorkerProcess("tests.apps.jobs_worker_app", env, [env["BGP_TEST_QUEUE"]]) as worker:
        job_id = bgp.jobs.submit(J.fail_times, args=[f"admin-{uuid.uuid4().hex}", 1],
                                 queue=env["BGP_TEST_QUEUE"])
        assert bgp.jobs.wait(job_id, timeout=30).state == "Failed", worker.log()[-3000:]
        page = text(client.get(f"{LIST}?state=Failed"))
        assert job_id in {unquote(pk) for pk in re.findall(r"/job/([^/\"]+)/change/", page)}
        response = act(client, "requeue_jobs", [job_id])
        assert messages_of(response) == [f"Requeued 1 job: {job_id}."]
        job = bgp.jobs.wait(job_id, timeout=30)
        assert (job.state, job.result, job.attempt) == ("Succeeded", 2, 2), worker.log()[-3000:]
    page = text(client.get(detail(job_id)))
    timeline = page[page.index('id="bgp-timeline"'):page.index('id="bgp-logs"')]
    assert re.findall(r">(\w+)</span>", timeline) == [
        "Created", "Enqueued", "Executing", "Failed", "Enqueued", "Executing", "Succeeded"]
    assert "requeued by night in the admin" in timeline
