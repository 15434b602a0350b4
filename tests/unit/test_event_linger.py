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


def test_soon_events_skip_the_linger_though_nobody_waits_for_them():
    repo = Counting()
    recorder = EventRecorder(lambda: repo, "background", linger=1.0, final_timeout=0)
    started = time.monotonic()
    recorder.record(event(0))
    recorder.record(event(1), soon=True)
    wait_until(lambda: repo.writes == [2], 0.7)
    assert time.monotonic() - started < 0.7


def test_a_flush_cuts_the_linger_short():
    """Reading this process's own events (``bgp.events.latest``) flushes: no linger."""
    repo = Counting()
    recorder = EventRecorder(lambda: repo, "background", linger=1.0)
    recorder.record(event(0))
    time.sleep(0.05)  # the writer took it and lingers
    started = time.monotonic()
    assert recorder.flush(5)
    assert time.monotonic() - started < 0.5
    assert repo.writes == [1]


def wait_until(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.005)


@pytest.fixture
def lingering_worker():
    """An in-process worker whose event writer lingers a whole second."""
    from celery.contrib.testing.worker import start_worker

    from tests.apps import commands

    app = Celery(f"linger-{time.monotonic_ns()}", set_as_current=False, broker="memory://")
    # The memory transport polls each second by default: poll at once, so only the
    # event writer's linger can delay what the test sees.
    app.conf.update(worker_hijack_root_logger=False,
                    broker_transport_options={"polling_interval": 0.01})
    bgp = BackgroundProcessing(app, event_repository=MemoryEventRepository(), event_linger=1.0,
                               handler_factory=commands.container)
    bgp.register_handlers(commands)
    with start_worker(app, pool="threads", perform_ping_check=False, loglevel="WARNING"):
        yield bgp


def latest(bgp, command_id):
    """As another process reads it (``bgp.events`` would first flush this process's)."""
    event = bgp.recorder.repository.latest(command_id)
    return event.status if event is not None else None


def test_a_chain_steps_end_shows_before_its_next_step_lingers_out(lingering_worker):
    """Celery sends a chain's next step before the step's end signal, and the next step
    may run in another process: the step's final event is written without lingering."""
    from celery import chain

    from tests.apps.commands import Echo, Fail

    bgp = lingering_worker
    first, second = Echo(text="one"), Echo(text="two")
    chain(bgp.signature(first), bgp.signature(second)).apply_async()
    wait_until(lambda: latest(bgp, first.id) is EventStatus.PROCESSED, 0.7)
    assert bgp.events.wait_for(second.id, timeout=5).status is EventStatus.PROCESSED

    failing, errback = Fail(message="for the errback"), Echo(text="handled")
    bgp.dispatch(failing, link_error=bgp.signature(errback))
    wait_until(lambda: latest(bgp, failing.id) is EventStatus.ERROR, 0.7)
