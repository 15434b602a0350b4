"""Celery app the Azure transport benchmark runs as its worker: one task, any broker."""
from __future__ import annotations

import json
import os
import time

import redis
from celery import Celery

import celery_bgp  # noqa: F401 - registers azurequeue://

app = Celery("bgp_azure_bench")
app.conf.update(
    broker_url=os.environ["BENCH_BROKER"],
    broker_transport_options=json.loads(os.environ.get("BENCH_TRANSPORT_OPTIONS", "{}")),
    task_default_queue=os.environ.get("BENCH_QUEUE", "bench"),
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=4,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    task_ignore_result=True,
)
_sink = redis.Redis.from_url(os.environ.get("BENCH_SINK", "redis://127.0.0.1:6379/8"))


@app.task(name="bench.touch")
def touch(key: str, i: int, sleep: float = 0.0) -> None:
    """Record that task ``i`` ran (a set member), after ``sleep`` seconds."""
    if sleep:
        time.sleep(sleep)
    _sink.sadd(key, i)
