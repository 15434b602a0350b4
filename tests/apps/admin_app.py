"""The BackgroundProcessing behind the admin tests: Django job store, Redis broker.

Requeued jobs are really sent: to the suite's Redis broker database, where a test
reads the message back or a real worker (``tests.apps.jobs_worker_app``) runs it.
"""
from __future__ import annotations

import os

from celery import Celery

from celery_bgp import BackgroundProcessing
from celery_bgp.priority import REDIS_PRIORITY_STEPS

_BASE = int(os.environ.get("BGP_TEST_REDIS_DB_BASE", "10"))
BROKER = f"redis://127.0.0.1:{os.environ.get('BGP_TEST_REDIS_PORT', '6379')}/{_BASE}"

app = Celery("admin_app", set_as_current=False)
app.conf.update(  # as tests.apps.jobs_worker_app, so its workers find the messages
    broker_url=BROKER, task_default_queue="bgp-admin-tests", task_queue_max_priority=10,
    broker_transport_options={"priority_steps": REDIS_PRIORITY_STEPS,
                              "queue_order_strategy": "priority"},
    broker_connection_retry_on_startup=True,
)
bgp = BackgroundProcessing(app, name="default", job_store="django://",
                           job_modules=["tests.apps"], job_retry={"max_attempts": 1},
                           event_repository="memory://")
