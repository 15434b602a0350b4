"""The Celery app of the Azure integration tests' workers: azurequeue:// on Azurite.

Configured from the environment: AZURE_STORAGE_CONNECTION_STRING (Azurite's ports),
BGP_TEST_TRANSPORT_OPTIONS (JSON), BGP_TEST_EVENTS, BGP_TEST_BACKEND, BGP_TEST_QUEUE,
BGP_TEST_PREFETCH.
"""
from __future__ import annotations

import json
import os

from celery import Celery

from celery_bgp import BackgroundProcessing

from . import azure_commands, commands

app = Celery("bgp_azure_tests")
app.conf.update(
    broker_url="azurequeue://",
    broker_transport_options=json.loads(os.environ.get("BGP_TEST_TRANSPORT_OPTIONS", "{}")),
    result_backend=os.environ.get("BGP_TEST_BACKEND"),
    task_default_queue=os.environ.get("BGP_TEST_QUEUE", "celery"),
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=int(os.environ.get("BGP_TEST_PREFETCH", "4")),
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    broker_connection_max_retries=None,
)
bgp = BackgroundProcessing(
    app,
    event_repository=os.environ.get("BGP_TEST_EVENTS", "memory://"),
    handler_factory=commands.container,
)
bgp.register_handlers([commands, azure_commands])
