"""Event model ordering, the memory repository, URLs, and the recorder."""
from __future__ import annotations

import dataclasses
import os
import threading
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from celery.app.task import Context
from hypothesis import example, given, settings
from hypothesis import strategies as st

from celery_bgp import CommandEvent, ErrorInfo, EventStatus, ImproperlyConfigured, signals
from celery_bgp.events import EventRecorder, repository_from_url, resolve_repository
from celery_bgp.events.memory import MemoryEventRepository
from celery_bgp.events.model import event_problem, newest_first
from celery_bgp.events.repository import EventRepository
from celery_bgp.signals import worker_timestamp

S = EventStatus
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def ev(status, seconds=0.0, command_id="c1", retries=0, **kw):
    return CommandEvent(command_id, status, T0 + timedelta(seconds=seconds), retries=retries, **kw)


def test_newest_first_with_status_breaking_ties():
    events = [ev(S.DISPATCHED, 0), ev(S.PROCESSED, 1), ev(S.PROCESSING, 1)]
    assert [e.status for e in newest_first(events)] == [S.PROCESSED, S.PROCESSING, S.DISPATCHED]


def test_a_later_attempt_outranks_a_late_retrying_write():
    events = [
        ev(S.PROCESSING, 0), ev(S.PROCESSING, 1.0, retries=1), ev(S.RETRYING, 1.5),
        ev(S.PROCESSED, 2.0, retries=1),
    ]
    assert newest_first(events)[0].status is S.PROCESSED


def test_worker_events_never_predate_the_dispatch_stamp():
    class Request:
        bgp_dispatched_at = (datetime.now(timezone.utc) + timedelta(minutes=5)).timestamp()

    stamped = worker_timestamp(Request())
    assert stamped > datetime.now(timezone.utc) + timedelta(minutes=4)


_HEADER_VALUES = st.recursive(  # what a message's JSON headers decode to (kombu adds datetimes)
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
    | st.datetimes(timezones=st.just(timezone.utc)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=6),
    max_leaves=12)
_FORGED = {"command_id": "victim", "command_name": "forged", "worker": "forged",
           "retries": 0, "requeues": 0}
_FUTURE = datetime(2999, 1, 1, tzinfo=timezone.utc)


@settings(max_examples=200, deadline=None)
@given(facts=_HEADER_VALUES, floor=_HEADER_VALUES)
@example(facts=[_FORGED, _FUTURE], floor=[_FUTURE])  # the receivers' own layouts
@example(facts=["victim", "forged", "forged", 0, 0, _FUTURE], floor=_FUTURE)
def test_headers_named_like_what_the_receivers_keep_never_shape_an_event(facts, floor):
    """Celery makes a message's headers attributes of its request, where the event
    receivers keep a request's facts: headers of those names change none of its events."""
    request = Context({"id": "cmd-1", "hostname": "w@h", "retries": 1, "_bgp_facts": facts,
                       "_bgp_floor": floor})
    task = SimpleNamespace(command_name="tests.Echo", request=request)
    before = datetime.now(timezone.utc)
    for status in (S.PROCESSING, S.PROCESSED):
        event = signals._event(task, status, request)
        assert (event.command_id, event.command_name, event.worker, event.retries) == (
            "cmd-1", "tests.Echo", "w@h", 1)
        assert before <= event.timestamp <= datetime.now(timezone.utc)
        assert event_problem(event) is None


def test_event_json_round_trip():
    event = ev(S.ERROR, command_name="a.B", command={"x": 1}, worker="w@h", retries=2,
               reason="r", error=ErrorInfo("ValueError", "bad", "Traceback..."))
    assert CommandEvent.from_json(event.to_json()) == event


def test_error_info_from_exception_has_traceback():
    try:
        raise ValueError("bad value")
    except ValueError as exc:
        info = ErrorInfo.from_exception(exc)
    assert info.type == "ValueError"
    assert info.message == "bad value"
    assert 'raise ValueError("bad value")' in info.traceback


def test_memory_repository_latest_all_and_race_order():
    repo = MemoryEventRepository()
    repo.add(ev(S.PROCESSED, 2))  # the worker's write lands first
    repo.add(ev(S.DISPATCHED, 0))
    repo.add(ev(S.PROCESSING, 1))
    assert repo.latest("c1").status is S.PROCESSED
    assert [e.status for e in repo.all("c1")] == [S.PROCESSED, S.PROCESSING, S.DISPATCHED]
    assert repo.latest("other") is None


def test_memory_repository_sliding_expiry():
    now = [0.0]
    repo = MemoryEventRepository(expiry=10, clock=lambda: now[0])
    repo.add(ev(S.DISPATCHED))
    now[0] = 8
    repo.add(ev(S.PROCESSING, 1))  # pushes expiry to 18
    now[0] = 15
    assert len(repo.all("c1")) == 2
    now[0] = 18.5
    assert repo.all("c1") == []


def test_memory_repository_concurrent_writers_lose_nothing():
    repo = MemoryEventRepository()

    def write(n):
        for i in range(500):
            repo.add(ev(S.PROCESSING, i, command_id="same", worker=f"w{n}"))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(repo.all("same")) == 4000


def test_urls_select_repositories():
    assert isinstance(repository_from_url("memory://"), MemoryEventRepository)
    assert repository_from_url("memory://a") is repository_from_url("memory://a")
    assert repository_from_url("memory://a") is not repository_from_url("memory://b")
    assert repository_from_url("memory://e?expiry=none").expiry is None
    repo = MemoryEventRepository()
    assert resolve_repository(repo) is repo
    assert resolve_repository(lambda: repo) is repo


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("nosuch://x", "unknown event repository scheme 'nosuch'"),
        ("127.0.0.1:6379", "has no scheme"),
        ("memory://?expirey=3", "unknown option 'expirey'"),
        ("memory://neg?expiry=-1", "must be positive"),
    ],
)
def test_bad_urls_are_clear(url, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        repository_from_url(url)


class Flaky(EventRepository):
    def __init__(self, failures):
        self.failures = failures
        self.stored = []

    def add_many(self, events):
        if self.failures:
            self.failures -= 1
            raise ConnectionError("store down")
        self.stored.extend(events)

    def all(self, command_id):
        return newest_first([e for e in self.stored if e.command_id == command_id])


def test_background_recorder_batches_and_catches_up_after_failures():
    repo = Flaky(failures=3)
    recorder = EventRecorder(lambda: repo, "background", retry_for=5)
    for i in range(100):
        recorder.record(ev(S.PROCESSING, i))
    assert recorder.flush(10)
    assert len(repo.stored) == 100
    assert recorder.stats.written == 100
    assert recorder.stats.dropped == 0
    assert recorder.stats.write_errors == 3


def test_recorder_drops_and_counts_when_the_store_stays_down():
    repo = Flaky(failures=10**9)
    recorder = EventRecorder(lambda: repo, "background", retry_for=0.2)
    recorder.record(ev(S.PROCESSING))
    assert recorder.flush(5)
    assert recorder.stats.dropped == 1
    sync = EventRecorder(lambda: repo, "sync")
    sync.record(ev(S.PROCESSING))  # never raises
    assert sync.stats.dropped == 1


def test_recorder_bounds_its_queue():
    gate = threading.Event()

    class Slow(Flaky):
        def add_many(self, events):
            gate.wait(5)
            super().add_many(events)

    recorder = EventRecorder(lambda: Slow(0), "background", max_pending=10, batch_size=1)
    for i in range(50):
        recorder.record(ev(S.PROCESSING, i))
    assert recorder.stats.dropped >= 39
    gate.set()
    assert recorder.flush(5)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_recorder_works_in_a_forked_child():
    repo = MemoryEventRepository()

    class Pipe(EventRepository):
        def add_many(self, events):
            os.write(w, b"x" * len(events))

        def all(self, command_id):
            return []

    r, w = os.pipe()
    recorder = EventRecorder(lambda: Pipe(), "background")
    recorder.record(ev(S.PROCESSING))
    recorder.flush()
    pid = os.fork()
    if pid == 0:  # child: the parent's thread does not exist here
        recorder.record(ev(S.PROCESSED))
        os._exit(0 if recorder.flush(5) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    time.sleep(0.05)
    assert os.read(r, 10) == b"xx"
    del repo


_text = st.none() | st.text(max_size=20)
_fields = st.fixed_dictionaries(
    {"command_id": st.text(min_size=1, max_size=22), "status": st.sampled_from(list(S)),
     "timestamp": st.datetimes(timezones=st.just(timezone.utc))},
    optional={"command_name": _text, "worker": _text, "reason": _text, "queue": _text,
              "retries": st.integers(0, 999_999), "requeues": st.integers(0, 999_999),
              "command": st.none() | st.dictionaries(st.text(max_size=5), st.integers()),
              "error": st.none() | st.builds(ErrorInfo, st.text(max_size=9), st.text(max_size=9))})


@settings(max_examples=200, deadline=None)
@given(_fields)
def test_a_trusted_event_is_the_event_the_constructor_builds(fields):
    """The worker's receivers build events without __init__'s checks: the same value,
    JSON, order and hash, and still frozen."""
    built, trusted = CommandEvent(**fields), CommandEvent.trusted(**fields)
    assert trusted == built
    if built.command is None:  # a payload (a dict) makes an event unhashable either way
        assert hash(trusted) == hash(built)
    assert trusted.to_json() == built.to_json() and trusted.order_text == built.order_text
    with pytest.raises(dataclasses.FrozenInstanceError):
        trusted.status = S.ERROR  # type: ignore[misc]
