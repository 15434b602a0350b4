"""Celery app the Azure transport benchmark runs as its worker: one task, any broker."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

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
SINK = Path(os.environ.get("BENCH_SINK", "/tmp/bgp-azure-bench"))


@app.task(name="bench.touch")
def touch(key: str, i: int, sleep: float = 0.0) -> None:
    """Record that task ``i`` ran (a line appended to ``<sink>/<key>``), after ``sleep``."""
    if sleep:
        time.sleep(sleep)
    fd = os.open(SINK / key, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{i}\n".encode())  # one small O_APPEND write: atomic
    finally:
        os.close(fd)


@app.task(name="bench.started")
def started(key: str, sent: float, sleep: float = 0.0) -> None:
    """Record how long after ``sent`` (a time.time()) this task started, then ``sleep``."""
    delay = time.time() - sent
    fd = os.open(SINK / key, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{delay:.4f}\n".encode())
    finally:
        os.close(fd)
    if sleep:
        time.sleep(sleep)


def _count_requests(path: Path) -> None:
    """Count every HTTP request the Azure SDK sends (one Azure transaction each)."""
    import threading

    from azure.core.pipeline.transport import RequestsTransport

    lock, count = threading.Lock(), [0]
    original = RequestsTransport.send

    def send(self, request, **kwargs):
        with lock:
            count[0] += 1
            path.write_text(str(count[0]))
        return original(self, request, **kwargs)

    RequestsTransport.send = send  # type: ignore[method-assign]


if os.environ.get("BENCH_COUNT_REQUESTS"):
    _count_requests(Path(os.environ["BENCH_COUNT_REQUESTS"]))
