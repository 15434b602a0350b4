"""``bgp_event_linger``: how long the event writer waits for more events to share a
round trip (README, Settings)."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import pytest
from celery import Celery

from celery_bgp import BackgroundProcessing, CommandEvent, EventStatus, ImproperlyConfigured
from celery_bgp.events import EventRecorder
from celery_bgp.events.memory import MemoryEventRepository


def make(**options) -> BackgroundProcessing:
    return BackgroundProcessing(Celery(set_as_current=False, broker="memory://"), **options)


def test_the_setting_reaches_the_writer_from_options_or_the_celery_config():
    assert make().recorder.linger == 0.05
    assert make(event_linger=0.05).recorder.linger == 0.05
    app = Celery(set_as_current=False, broker="memory://")
    app.conf.bgp_event_linger = "0.2"  # as Django settings give it, a string is read too
    assert BackgroundProcessing(app).recorder.linger == 0.2


@pytest.mark.parametrize("value", [-0.1, 1.5, "soon", None, float("nan")])
def test_a_linger_out_of_range_is_refused_at_once(value):
    with pytest.raises(ImproperlyConfigured, match="bgp_event_linger is seconds from 0 to 1"):
        make(event_linger=value)


class Counting(MemoryEventRepository):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[int] = []

    def add_many(self, events):
        self.writes.append(len(events))
        super().add_many(events)


def event(i: int) -> CommandEvent:
    return CommandEvent(f"c{i}", EventStatus.PROCESSING, datetime.now(timezone.utc))


def test_events_within_the_linger_share_one_write_and_none_waits_longer():
    repo = Counting()
    recorder = EventRecorder(lambda: repo, "background", linger=0.3)
    recorder.record(event(0))
    time.sleep(0.1)  # within the linger: the writer still holds the first event
    recorder.record(event(1))
    assert recorder.flush(5)
    assert repo.writes == [2]
    started = time.monotonic()
    recorder.record(event(2))
    done = threading.Event()
    threading.Thread(target=lambda: (recorder.flush(5), done.set()), daemon=True).start()
    assert done.wait(5) and time.monotonic() - started < 1.0  # the linger bounds the wait
    assert repo.writes == [2, 1]
