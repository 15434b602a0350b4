"""Worker app for benchmarks/overhead.py: one plain task and one equivalent command.

``BGP_BENCH_EVENTS=discard`` records the command events into a repository that drops
them: what the command layer costs without the event writes.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import redis
from celery import Celery

from celery_bgp import BackgroundCommand, BackgroundProcessing
from celery_bgp.events import CommandEvent, EventRepository

BROKER = os.environ.get("BGP_BENCH_BROKER", "redis://127.0.0.1:6379/5")
EVENTS = os.environ.get("BGP_BENCH_EVENTS", "redis://127.0.0.1:6379/6")
COUNTER = os.environ.get("BGP_BENCH_COUNTER", "redis://127.0.0.1:6379/7")

app = Celery("bench", broker=BROKER)
app.conf.update(task_default_queue="bench", worker_hijack_root_logger=False,
                task_ignore_result=True)
if os.environ.get("BGP_BENCH_ACKS_LATE"):
    # The at-least-once preset's acknowledgement, for both the plain task and the command.
    app.conf.update(task_acks_late=True, task_reject_on_worker_lost=True,
                    worker_prefetch_multiplier=1)


class Discard(EventRepository):
    """Events recorded, then thrown away: the command layer's cost without the writes."""

    def add_many(self, events: Sequence[CommandEvent]) -> None:
        pass

    def all(self, command_id: str) -> list[CommandEvent]:
        return []


#: BGP_BENCH_LINGER: seconds the event writer waits to fill a batch (bgp_event_linger).
_linger = {"event_linger": float(os.environ["BGP_BENCH_LINGER"])} \
    if os.environ.get("BGP_BENCH_LINGER") else {}
bgp = BackgroundProcessing(app, event_repository=Discard() if EVENTS == "discard" else EVENTS,
                           event_write=os.environ.get("BGP_BENCH_EVENT_WRITE", "background"),
                           **_linger)
_counter = None


def count(key: str) -> None:
    """The same side effect for both: one INCR, so the finish line is observable."""
    global _counter
    if _counter is None:
        _counter = redis.Redis.from_url(COUNTER)
    _counter.incr(key)


@app.task(name="bench.plain")
def plain(payload: dict) -> None:
    count(payload["key"])


@dataclass
class BenchCommand(BackgroundCommand):
    key: str
    text: str
    number: int


@bgp.handler(BenchCommand)
def handle(command: BenchCommand) -> None:
    count(command.key)
