"""A command whose fields do not fit their types fails in the caller, not on the worker.

Through a real ``celery worker`` on Redis and on RabbitMQ: ``dispatch`` raises, nothing
is published, no event is recorded, the worker never hears of the command; the next
valid command goes through as usual.
"""
from __future__ import annotations

import uuid

import pytest
from celery import signals

from celery_bgp import EventStatus, InvalidCommand
from tests.apps.commands import Append

pytestmark = pytest.mark.integration


def test_a_wrong_field_type_raises_at_dispatch_and_nothing_reaches_the_worker(stack, sink):
    bgp = stack.publisher()
    key = f"mistyped-{uuid.uuid4().hex}"
    published: list[str] = []

    def on_publish(sender=None, headers=None, **_):
        published.append((headers or {}).get("id"))

    signals.before_task_publish.connect(on_publish, weak=False)
    try:
        bad = Append(key=key, item=42)  # type: ignore[arg-type] - item is a str
        with pytest.raises(InvalidCommand, match="item: got int, expected str"):
            bgp.dispatch(bad)
        assert published == []  # no message left this process

        good = Append(key=key, item="valid")  # sent after the bad one would have been
        assert bgp.dispatch(good).get(timeout=30) == "valid"
        assert published == [good.id]
    finally:
        signals.before_task_publish.disconnect(on_publish)

    assert bgp.events.wait_for(good.id, timeout=30).status is EventStatus.PROCESSED
    bgp.events.flush()
    assert bgp.events.all(bad.id) == []  # no DISPATCHED here, no ERROR from the worker
    assert sink.lrange(key, 0, -1) == ["valid"]
    log = stack.worker.log()
    assert good.id in log  # the worker logs each message it receives ...
    assert bad.id not in log  # ... and never received this one
