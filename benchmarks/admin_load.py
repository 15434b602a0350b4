"""Load time of the job admin's pages over 1,000,000 jobs on PostgreSQL, against plain Django.

    python benchmarks/admin_load.py [--jobs 1000000] [--loads 7] [--refill]

Fills a database of its own (``bgp_bench_admin`` on 127.0.0.1:5432, created when
missing and kept for the next run unless ``--refill``) in SQL (``INSERT ... SELECT
generate_series``): jobs over the last ``jobs * 2`` seconds in five queues, 80 %
succeeded, 10 % failed, 5 % enqueued, 5 % executing; their state histories (Enqueued,
Executing, the final state with an exception for the failed); two text properties each
(``tenant``: 200 values, ``order``: unique). Then ``VACUUM ANALYZE``.

Each page is loaded ``--loads`` times (after one warm-up) through the Django test
client as a logged-in superuser, and the median is reported, for the celery-bgp admin
and for the baseline a user would get from a plain ``ModelAdmin`` of the same model:
Django's paginator with its ``COUNT(*)`` and full result count, its default filters
(``SELECT DISTINCT`` for the text columns), ``icontains`` search over id, name and
property values (``tenant=x`` is searched as ``x`` there), the default change form.
The dashboard's baseline is the job store's
generic ``summary()`` (paging through every job), run once.
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import django  # noqa: E402
from django.conf import settings  # noqa: E402

DB_NAME = "bgp_bench_admin"


def configure() -> None:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-only",
        ALLOWED_HOSTS=["testserver"],
        DATABASES={"default": {
            "ENGINE": "django.db.backends.postgresql", "NAME": DB_NAME, "USER": "postgres",
            "HOST": "127.0.0.1", "PORT": 5432,
        }},
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes",
                        "django.contrib.sessions", "django.contrib.messages",
                        "django.contrib.admin", "django_celery_results",
                        "celery_bgp.contrib.django"],
        MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware",
                    "django.middleware.common.CommonMiddleware",
                    "django.middleware.csrf.CsrfViewMiddleware",
                    "django.contrib.auth.middleware.AuthenticationMiddleware",
                    "django.contrib.messages.middleware.MessageMiddleware"],
        TEMPLATES=[{
            "BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True,
            "OPTIONS": {"context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages"]},
        }],
        ROOT_URLCONF=__name__,
        USE_TZ=True, TIME_ZONE="UTC", DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
    import psycopg

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres",
                         autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                            (DB_NAME,)).fetchone():
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def urls() -> list:
    """The celery-bgp admin at /admin/, a plain ModelAdmin of the same model at /plain/."""
    from django.contrib import admin
    from django.urls import path

    from celery_bgp.contrib.django.models import Job

    class PlainJobAdmin(admin.ModelAdmin):
        list_display = ("id", "name", "queue", "priority", "state", "created", "worker")
        list_filter = ("state", "queue", "priority", "name", "environment", "created")
        search_fields = ("id", "name", "properties__value_text")
        ordering = ("-created",)

    plain = admin.AdminSite(name="plain")
    plain.register(Job, PlainJobAdmin)
    return [path("admin/", admin.site.urls), path("plain/", plain.urls)]


SQL_JOBS = """
INSERT INTO celery_bgp_job (id, name, kind, queue, priority, environment, state, created,
    modified, args, kwargs, middleware, options, result, attempt, worker, sequence, life_order)
SELECT lpad(g::text, 8, '0') || substr(md5(g::text), 1, 14),
    'app.jobs:task' || (g %% 40), 'callable',
    (ARRAY['default', 'mail', 'sms', 'reports', 'billing'])[1 + (g / 3) %% 5], (g / 7) %% 5,
    'default',
    CASE WHEN g %% 20 < 16 THEN 'Succeeded' WHEN g %% 20 < 18 THEN 'Failed'
         WHEN g %% 20 = 18 THEN 'Enqueued' ELSE 'Executing' END,
    now() - (%(n)s - g) * interval '2 second',
    now() - (%(n)s - g) * interval '2 second' + (g %% 7) * interval '1 second',
    jsonb_build_array('order', g), '{}', '[]', '{}',
    CASE WHEN g %% 20 < 16 THEN to_jsonb(g) END,
    CASE WHEN g %% 20 = 18 THEN 0 ELSE 1 END,
    CASE WHEN g %% 20 = 18 THEN NULL ELSE 'worker-' || (g %% 8) || '@bench' END,
    CASE WHEN g %% 20 = 18 THEN 1 WHEN g %% 20 = 19 THEN 2 ELSE 3 END, ''
FROM generate_series(1, %(n)s) g
"""
SQL_STATES = """
INSERT INTO celery_bgp_jobstate (job_id, sequence, name, elected, reason, data)
SELECT id, 1, 'Enqueued', created, NULL, '{}' FROM celery_bgp_job
UNION ALL
SELECT id, 2, 'Executing', created + interval '10 millisecond', NULL,
    jsonb_build_object('worker', worker, 'attempt', 1)
FROM celery_bgp_job WHERE state <> 'Enqueued'
UNION ALL
SELECT id, 3, state, modified, NULL,
    CASE WHEN state = 'Failed' THEN jsonb_build_object('exception_type', 'ValueError',
        'message', 'no luck for ' || id, 'traceback', 'Traceback ...', 'attempt', 1)
    ELSE '{}' END
FROM celery_bgp_job WHERE state IN ('Succeeded', 'Failed')
"""
SQL_PROPERTIES = """
INSERT INTO celery_bgp_jobproperty (job_id, name, value_text)
SELECT id, 'tenant', 'tenant-' || (hashtext(id) & 255) %% 200 FROM celery_bgp_job
UNION ALL
SELECT id, 'order', 'O-' || substr(id, 1, 8) FROM celery_bgp_job
"""


def fill(n: int) -> None:
    """``n`` jobs with histories and properties, in SQL; then VACUUM ANALYZE."""
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE celery_bgp_job CASCADE")
        for label, sql in (("jobs", SQL_JOBS), ("states", SQL_STATES),
                           ("properties", SQL_PROPERTIES)):
            step = time.perf_counter()
            cursor.execute(sql, {"n": n})
            print(f"  {label}: {cursor.rowcount:,} rows in {time.perf_counter() - step:.0f}s",
                  flush=True)
    connection.close()
    import psycopg

    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={DB_NAME}",
                         autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    print(f"filled {n:,} jobs in {time.perf_counter() - started:.0f}s", flush=True)


def job_count() -> int:
    from celery_bgp.contrib.django.admin_paging import table_estimate

    return table_estimate("celery_bgp_job") or 0


def median_ms(client, url: str, loads: int) -> float:
    response = client.get(url)  # warm-up (and a check)
    assert response.status_code == 200, (url, response.status_code)
    times = []
    for _ in range(loads):
        start = time.perf_counter()
        client.get(url)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--loads", type=int, default=7)
    parser.add_argument("--refill", action="store_true")
    args = parser.parse_args()
    configure()
    global urlpatterns
    urlpatterns = urls()
    from django.contrib.admin.utils import quote
    from django.contrib.auth import get_user_model
    from django.test import Client

    from celery_bgp.commands import utcnow
    from celery_bgp.contrib.django.models import Job, JobLog
    from celery_bgp.contrib.django.store import DjangoJobStore
    from celery_bgp.jobs.store import JobStore

    if args.refill or abs(job_count() - args.jobs) > args.jobs * 0.05:
        print(f"filling {DB_NAME} with {args.jobs:,} jobs ...", flush=True)
        fill(args.jobs)
    failed = Job.objects.filter(state="Failed").order_by("-created").first()
    if not JobLog.objects.filter(job=failed).exists():
        JobLog.objects.bulk_create([JobLog(job=failed, level=20, message=f"step {i}",
                                           time=utcnow()) for i in range(50)])
    order = Job.objects.order_by("created").values_list("id", flat=True)[args.jobs // 2]
    user, _ = get_user_model().objects.get_or_create(
        username="bench", defaults={"is_staff": True, "is_superuser": True})
    client = Client()
    client.force_login(user)

    pages = [
        ("list, unfiltered", "/job/"),
        ("list, state=Failed", "/job/?state=Failed"),
        ("list, queue=mail & state=Enqueued", "/job/?queue=mail&state=Enqueued"),
        ("search: property value (exact)", f"/job/?q=O-{order[:8]}"),
        ("search: tenant=tenant-42", "/job/?q=tenant%3Dtenant-42"),
        ("search: prefix O-0050 (10,000 match)", "/job/?q=O-0050"),
        ("search: tenant=tenant-1* (55 % match)", "/job/?q=tenant%3Dtenant-1*"),
        ("list, page 50", "/job/?p=50"),
        ("job page (failed, 50 log lines)", f"/job/{quote(failed.pk)}/change/"),
    ]
    print(f"\ncelery-bgp admin vs a plain ModelAdmin, {job_count():,} jobs (estimate), "
          f"PostgreSQL, median of {args.loads} loads\n")
    print(f"{'page':<38} {'celery-bgp':>11} {'plain Django':>13} {'ratio':>7}")
    for label, path in pages:
        ours = median_ms(client, f"/admin/celery_bgp{path}", args.loads)
        plain_path = re.sub(r"q=tenant%3D(tenant-\d+)\*?", r"q=\1", path)
        plain = median_ms(client, f"/plain/celery_bgp{plain_path}", max(3, args.loads // 2))
        print(f"{label:<38} {ours:>9.1f}ms {plain:>11.1f}ms {plain / ours:>6.1f}x", flush=True)
    ours = median_ms(client, "/admin/celery_bgp/job/dashboard/", args.loads)
    start = time.perf_counter()
    JobStore.summary(DjangoJobStore(), None, since=utcnow())  # the generic fallback
    fallback = (time.perf_counter() - start) * 1000
    print(f"{'dashboard (generic summary: 1 run)':<38} {ours:>9.1f}ms {fallback:>11.1f}ms "
          f"{fallback / ours:>6.1f}x")


urlpatterns: list = []

if __name__ == "__main__":
    main()
