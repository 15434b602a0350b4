"""Worker app for benchmarks/jobs.py: a plain task with django-celery-results, and jobs.

``BGP_BENCH_STORE`` picks the job store (default ``django://``; ``db+postgresql://...``
for the SQLAlchemy store).
"""
from __future__ import annotations

import os

import django
from django.conf import settings

DB = os.environ.get("BGP_BENCH_DB", "bgp_bench_throughput")
if not settings.configured:
    settings.configure(
        DATABASES={"default": {
            "ENGINE": "django.db.backends.postgresql", "NAME": DB, "USER": "postgres",
            "HOST": "127.0.0.1", "PORT": 5432,
            # benchmarks/jobs.py --prepare-threshold N: Django's option, as a user sets it
            "OPTIONS": ({"prepare_threshold": int(os.environ["BGP_BENCH_PREPARE_THRESHOLD"])}
                        if os.environ.get("BGP_BENCH_PREPARE_THRESHOLD") else {})}},
        INSTALLED_APPS=["django.contrib.contenttypes", "django_celery_results",
                        "celery_bgp.contrib.django"],
        USE_TZ=True, TIME_ZONE="UTC", DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
    django.setup()

from celery import Celery  # noqa: E402

from celery_bgp import BackgroundProcessing  # noqa: E402

app = Celery("bench_jobs")
app.conf.update(
    broker_url=os.environ.get("BGP_BENCH_BROKER", "redis://127.0.0.1:6379/5"),
    result_backend="django-db",
    result_extended=True,
    task_default_queue="bench-jobs",
)
bgp = BackgroundProcessing(app, job_store=os.environ.get("BGP_BENCH_STORE", "django://"),
                           job_modules=["benchmarks.jobs_app"], event_repository="memory://")


def publisher(store: str) -> BackgroundProcessing:
    """Another publisher on the same broker and queue, with its own job store."""
    other = Celery(f"bench_jobs_{abs(hash(store))}", set_as_current=False)
    other.conf.update(broker_url=app.conf.broker_url, task_default_queue="bench-jobs")
    return BackgroundProcessing(other, job_store=store, job_modules=["benchmarks.jobs_app"],
                                event_repository="memory://")


@app.task(name="bench.plain_add")
def plain_add(a: int, b: int) -> int:
    return a + b


_counter = None


@app.task(name="bench.floor_add", ignore_result=True)
def floor_add(a: int, b: int) -> int:
    """Celery's own cost, as a floor: no result stored, one Redis INCR to count it."""
    global _counter
    if _counter is None:
        import redis

        _counter = redis.Redis.from_url(os.environ["BGP_BENCH_COUNTER"])
    _counter.incr("bgp-bench-floor")
    return a + b


def add(a: int, b: int) -> int:
    """The same work as a tracked job."""
    return a + b
