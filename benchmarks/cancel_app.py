"""Worker app for benchmarks/cancel_latency.py: jobs on Redis, the Django store on PostgreSQL."""
from __future__ import annotations

import os
import time

import django
from django.conf import settings

DB = os.environ.get("BGP_BENCH_DB", "bgp_bench_cancel")
if not settings.configured:
    settings.configure(
        DATABASES={"default": {"ENGINE": "django.db.backends.postgresql", "NAME": DB,
                               "USER": "postgres", "HOST": "127.0.0.1", "PORT": 5432}},
        INSTALLED_APPS=["django.contrib.contenttypes", "celery_bgp.contrib.django"],
        USE_TZ=True, TIME_ZONE="UTC", DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
    django.setup()

from celery import Celery  # noqa: E402

from celery_bgp import BackgroundProcessing  # noqa: E402
from celery_bgp.jobs import CancellationToken, JobCancelled  # noqa: E402

app = Celery("bench_cancel")
app.conf.update(
    broker_url=os.environ.get("BGP_BENCH_BROKER", "redis://127.0.0.1:6379/5"),
    task_default_queue=os.environ.get("BGP_BENCH_QUEUE", "bench-cancel"),
    worker_prefetch_multiplier=1,
)
bgp = BackgroundProcessing(
    app, job_store="django://", job_modules=["benchmarks.cancel_app"],
    event_repository="memory://",
    job_lock_timeout=float(os.environ.get("BGP_BENCH_LOCK_TIMEOUT", "60")),
)


def loop(seconds: float, cancellation: CancellationToken) -> str:
    """Work in 0.1 s steps, stopping as soon as the token fires."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cancellation.wait(0.1):
            raise JobCancelled("stopped on request")
    return "done"


def sleeper(seconds: float) -> str:
    """Ignore the token: only terminate stops it."""
    time.sleep(seconds)
    return "slept"
