"""Worker app of the hostile-message tests (tests/reliability/test_hostile_messages.py).

A project that accepts pickle for its own tasks and compresses with gzip: the worker
must still refuse pickle for command tasks, bound what gzip may inflate to, and refuse
compressions it did not enable. On RabbitMQ its queue dead-letters to ``<queue>-dlq``.
Configured from the environment (BGP_TEST_BROKER, BGP_TEST_QUEUE, BGP_TEST_EVENTS,
BGP_TEST_TRANSPORT_OPTIONS for azurequeue://).
"""
from __future__ import annotations

import os

from celery import Celery

from celery_bgp import BackgroundProcessing

from . import commands
from .hostile_conf import configure

app = Celery("bgp_hostile")
configure(app, os.environ)
bgp = BackgroundProcessing(app, event_repository=os.environ["BGP_TEST_EVENTS"],
                           event_write="sync", handler_factory=commands.container)
bgp.register_handlers(commands)


@app.task(name="tests.hostile.plain")
def plain(value=None):
    """One of the project's own (non-command) tasks."""
    return value
