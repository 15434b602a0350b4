"""A small project for the CLI tests: eager Celery, in-memory events and jobs."""
from __future__ import annotations

from celery import Celery

from celery_bgp import BackgroundProcessing

app = Celery("cli_app", broker="memory://", set_as_current=False)
app.conf.task_always_eager = True
bgp = BackgroundProcessing(app, name="cli", job_store="memory://cli", job_modules=["tests.apps"],
                           event_write="sync", job_retry={"max_attempts": 1})
bgp.register_handlers("tests.apps.commands")
