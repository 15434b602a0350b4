"""Plain Celery app run on Redis and on azurequeue:// by the parity tests (same tasks, same conf).

Configured from the environment: BGP_TEST_BROKER (``redis://...`` or ``azurequeue://``),
AZURE_STORAGE_CONNECTION_STRING, BGP_TEST_TRANSPORT_OPTIONS (JSON), BGP_TEST_BACKEND,
BGP_TEST_SINK, BGP_TEST_QUEUE.
"""
from __future__ import annotations

import json
import os
import time

import redis
from celery import Celery

app = Celery("bgp_parity")
app.conf.update(
    broker_url=os.environ.get("BGP_TEST_BROKER", "azurequeue://"),
    broker_transport_options=json.loads(os.environ.get("BGP_TEST_TRANSPORT_OPTIONS", "{}")),
    result_backend=os.environ.get("BGP_TEST_BACKEND"),
    task_default_queue=os.environ.get("BGP_TEST_QUEUE", "celery"),
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


def sink() -> redis.Redis:
    return redis.Redis.from_url(os.environ["BGP_TEST_SINK"], decode_responses=True)


@app.task(name="parity.sleep")
def sleep(seconds: float, key: str | None = None) -> float:
    if key:
        sink().rpush(key, "started")
    time.sleep(seconds)
    if key:
        sink().rpush(key, "done")
    return seconds


@app.task(name="parity.echo")
def echo(value: object) -> object:
    return value


@app.task(name="parity.total")
def total(values: list) -> int:
    return sum(len(v) if isinstance(v, str) else int(v) for v in values)


