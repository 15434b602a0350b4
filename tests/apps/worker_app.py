"""The Celery app the integration tests' worker subprocesses run, configured from env."""
from __future__ import annotations

import os

from celery import Celery

from celery_bgp import BackgroundProcessing

from . import commands

app = Celery("bgp_tests")
app.conf.update(
    broker_url=os.environ["BGP_TEST_BROKER"],
    result_backend=os.environ.get("BGP_TEST_BACKEND"),
    task_default_queue=os.environ.get("BGP_TEST_QUEUE", "celery"),
    # A project that accepts pickle for its own tasks: command tasks must still refuse it.
    accept_content=["json", "pickle"],
    broker_connection_retry_on_startup=True,
)
bgp = BackgroundProcessing(
    app,
    event_repository=os.environ["BGP_TEST_EVENTS"],
    event_write=os.environ.get("BGP_TEST_EVENT_WRITE", "background"),
    handler_factory=commands.container,
)
bgp.register_handlers(commands)
