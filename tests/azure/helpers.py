"""Small helpers shared by the Azure tests."""
from __future__ import annotations

import base64
import contextlib
import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from kombu import Connection, Consumer, Exchange, Producer, Queue


def task_queue(name: str) -> Queue:
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


def publish(conn: Connection, queue: str, body: Any, *, priority: int | None = None,
            delay: float | None = None, headers: dict | None = None) -> None:
    """Publish like Celery does: direct exchange named after the queue, ETA in headers."""
    headers = dict(headers or {})
    if delay is not None:
        headers["eta"] = (datetime.now(timezone.utc) + timedelta(seconds=delay)).isoformat()
    q = task_queue(queue)
    Producer(conn.default_channel).publish(
        body, exchange=q.exchange, routing_key=queue, declare=[q], serializer="json",
        priority=priority, headers=headers)


def collect(conn: Connection, queue: str, count: int, timeout: float = 10.0, *,
            ack: bool = True, prefetch: int | None = None, channel: Any = None) -> list[Any]:
    """Consume until ``count`` messages arrived (or ``timeout``); return the messages."""
    got: list[Any] = []
    channel = channel or conn.default_channel
    if prefetch is not None:
        channel.basic_qos(0, prefetch, False)

    def on_message(body: Any, message: Any) -> None:
        got.append(message)
        if ack:
            message.ack()

    consumer = Consumer(channel, [task_queue(queue)], callbacks=[on_message])
    consumer.consume()
    deadline = time.monotonic() + timeout
    try:
        while len(got) < count and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                conn.drain_events(timeout=min(0.5, max(0.01, deadline - time.monotonic())))
    finally:
        consumer.cancel()
    if ack:
        conn.transport.leases.flush()  # acks are sent in the background
    return got


def peek_texts(conn: Connection, physical: str) -> list[str]:
    """Raw text of the visible messages of an Azure queue (without receiving them)."""
    client = conn.transport.storage.queue_client(physical)
    return [m.content for m in client.peek_messages(max_messages=32)]


def decode(text: str) -> dict:
    return json.loads(base64.b64decode(text))
