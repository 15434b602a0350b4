"""Worker app of the swarm tests: a swarm and a sub-swarm with middleware, Django store.

Queue names come from ``BGP_TEST_QUEUE`` (``<q>-inv``, ``<q>-pay``, ``<q>-eu``), so each
test run has its own.
"""
from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_settings")
os.environ.setdefault("BGP_TEST_USE_TEST_DB", "1")

import django

django.setup()

from celery import Celery  # noqa: E402

from celery_bgp import BackgroundProcessing  # noqa: E402
from tests.apps.jobs import sink  # noqa: E402

QUEUE = os.environ.get("BGP_TEST_QUEUE", "swarm")

app = Celery("bgp_swarm_tests")
app.conf.update(broker_url=os.environ["BGP_TEST_BROKER"], task_default_queue=f"{QUEUE}-plain",
                broker_connection_retry_on_startup=True)
bgp = BackgroundProcessing(app, event_repository="memory://", job_store="django://",
                           job_modules=["tests.apps"], job_retry={"max_attempts": 1})


def tagged(tag: str):
    def middleware(context, call_next):
        sink().rpush(f"{QUEUE}:mw:{context.job.id}", tag)
        return call_next(context)

    middleware.__name__ = f"tag_{tag}"
    return middleware


bgp.swarm("billing", queues=[f"{QUEUE}-inv", f"{QUEUE}-pay"], concurrency=3, prefetch=4,
          middleware=[tagged("billing")])
bgp.swarm("billing-eu", parent="billing", queues=[f"{QUEUE}-eu"], prefetch=2,
          middleware=[tagged("eu")])
