"""Worker app of the fault-injection suite: the documented at-least-once preset."""
from __future__ import annotations

import os

from celery import Celery

from celery_bgp import BackgroundProcessing
from celery_bgp.presets import at_least_once

from . import commands

app = Celery("bgp_faults")
app.conf.update(at_least_once(visibility_timeout=float(os.environ.get("BGP_TEST_VISIBILITY",
                                                                      "5"))))
app.conf.update(
    broker_url=os.environ["BGP_TEST_BROKER"],
    task_default_queue=os.environ.get("BGP_TEST_QUEUE", "celery"),
    task_ignore_result=True,
)
bgp = BackgroundProcessing(app, event_repository=os.environ["BGP_TEST_EVENTS"])
bgp.register_handlers(commands)
