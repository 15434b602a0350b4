"""Worker app of the SQLAlchemy job store's real-worker tests: no Django anywhere.

``BGP_TEST_JOB_STORE`` is the ``db+<url>`` of a database the test created and migrated.
"""
from __future__ import annotations

import os

from celery import Celery

from celery_bgp import BackgroundProcessing

app = Celery("bgp_sa_jobs_tests")
app.conf.update(
    broker_url=os.environ["BGP_TEST_BROKER"],
    task_default_queue=os.environ.get("BGP_TEST_QUEUE", "celery"),
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)
bgp = BackgroundProcessing(
    app,
    event_repository="memory://",
    job_store=os.environ["BGP_TEST_JOB_STORE"],
    job_modules=["tests.apps"],
    job_retry={"max_attempts": 1},
    job_lock_timeout=float(os.environ.get("BGP_TEST_LOCK_TIMEOUT", "60")),
    job_monitor_interval=float(os.environ.get("BGP_TEST_MONITOR_INTERVAL", "30")),
)
