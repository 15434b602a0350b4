"""Issue 11, "events must not vanish": with real workers, brokers and stores.

- A worker SIGKILLed right after it acknowledged commands must not leave any of them
  PROCESSING forever: under ``acks_late`` the final event is written before the ack.
- Malformed ``bgp_dispatched_at`` / ``bgp_requeues`` headers are repaired (with a
  warning) and the events recorded anyway.
- One bad event (an integer command id, a payload PostgreSQL refuses) is quarantined
  alone: the good events of its batch land in the Django store.
"""
from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import redis
from celery import Celery

from celery_bgp import BackgroundProcessing, CommandEvent, EventStatus
from celery_bgp.commands import encode_command, new_command_id, utcnow
from celery_bgp.events import EventRepository
from celery_bgp.events.recorder import EventRecorder
from celery_bgp.presets import at_least_once
from celery_bgp.signals import DISPATCHED_AT, INSTANCE, REQUEUES, worker_timestamp
from tests.apps.commands import SlowAppend
from tests.conftest import BROKER_DB, EVENTS_DB, SINK_DB, stack_env
from tests.helpers.databases import django_db_mark, require_database
from tests.helpers.faults import record
from tests.helpers.redis_server import RedisServer
from tests.helpers.workers import WorkerProcess

pytestmark = pytest.mark.integration

S = EventStatus
#: The faults app (at-least-once preset) whose event writer lingers 100 ms per batch.
APP = "tests.apps.survive_app"


def publisher(env: dict[str, str], **conf) -> BackgroundProcessing:
    """A publisher configured like the faults worker app (the at-least-once preset)."""
    app = Celery(f"survive-{uuid.uuid4().hex[:6]}", set_as_current=False)
    app.conf.update(at_least_once(visibility_timeout=5, publish_retry_for=60))
    app.conf.update(broker_url=env["BGP_TEST_BROKER"], task_default_queue=env["BGP_TEST_QUEUE"],
                    task_ignore_result=True, **conf)
    return BackgroundProcessing(app, name=f"survive-{uuid.uuid4().hex[:6]}",
                                event_repository=env["BGP_TEST_EVENTS"])


def sink_client(redis_base: str) -> redis.Redis:
    return redis.Redis.from_url(f"{redis_base}/{SINK_DB}", decode_responses=True)


def wait_until(condition, timeout: float, what: str, log=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}\n{log()[-4000:]}"
        time.sleep(0.002)


# -- 1. SIGKILL right after acknowledgements -----------------------------------------------


def kill_after_acks(scenario: str, broker: str, env: dict[str, str], sink: redis.Redis,
                    app: str = APP, count: int = 100, kills: int = 4,
                    make_publisher=publisher, broker_empty=None, settle: float = 3.0
                    ) -> tuple[dict, list[str]]:
    """Dispatch ``count`` fast commands (acks_late); SIGKILL the worker's process group
    ``kills`` times while it acknowledges them, then let a last worker drain the queue.

    The kill lands a few ms after a handler marked the sink, so the commands the worker
    just acknowledged are the ones whose final event was still in its writer's memory
    (before the fix). Every command that ran must end with a final event: the ones
    acknowledged before a kill (never redelivered) included. A command that ran but was
    not acknowledged comes back (a lease or visibility timeout later) and runs again:
    the drain ends ``settle`` seconds after the last handler ran once every command ran
    (or, with ``broker_empty``, once the broker holds none of the queue's messages, to
    stop waiting for ones the transport lost). Returns the row and the stuck commands.
    """
    key = f"after-ack-{uuid.uuid4().hex}"
    bgp = make_publisher(env)
    commands = [SlowAppend(key=key, seconds=0.002) for _ in range(count)]
    ids = {c.id for c in commands}
    for command in commands:
        bgp.dispatch(command)

    def seen() -> set[str]:
        return set(sink.lrange(key, 0, -1))

    step = count // (kills + 2)
    for _ in range(kills):
        worker = WorkerProcess(app, env, [env["BGP_TEST_QUEUE"]], concurrency=2).start()
        target = min(count, len(seen()) + step)
        try:
            # Progress, or nothing left to take: a message lost in kombu's Redis window
            # (see the Redis test) never comes, and the last steps' target would wait.
            wait_until(lambda target=target: len(seen()) >= target
                       or (broker_empty is not None and broker_empty()), 90,
                       "the worker made no progress", worker.log)
        finally:
            worker.kill()  # SIGKILL: the main process (which acks) and the pool children
    with WorkerProcess(app, env, [env["BGP_TEST_QUEUE"]], concurrency=2):
        deadline, runs, changed = time.monotonic() + 150, -1, time.monotonic()
        while time.monotonic() < deadline:
            if sink.llen(key) != runs:
                runs, changed = sink.llen(key), time.monotonic()
            finished = broker_empty() if broker_empty is not None else seen() >= ids
            if finished and time.monotonic() - changed > settle:
                break
            time.sleep(0.1)
    # The last worker stopped warmly (its events are flushed); the publisher's too.
    assert bgp.events.flush(30)
    done = seen()
    stuck = []
    for command_id in sorted(done & ids):
        latest = bgp.events.latest(command_id)
        if latest is None or not latest.status.is_final:
            stuck.append(f"{command_id}: {latest.status.value if latest else 'no event'}")
    row = record(scenario, ids, sink.lrange(key, 0, -1), broker=broker, stuck=len(stuck))
    row["never_ran"] = {cid: [e.status.value for e in bgp.events.all(cid)]
                        for cid in sorted(ids - done)}
    return row, stuck


def test_sigkill_after_ack_on_redis(redis_base, tmp_path):
    server = RedisServer(tmp_path / "redis", durable=False).start()
    try:
        env = stack_env(f"{server.url}/0", redis_base, f"survive-{uuid.uuid4().hex[:6]}")
        queue = env["BGP_TEST_QUEUE"]
        client = redis.Redis.from_url(env["BGP_TEST_BROKER"])
        row, stuck = kill_after_acks(
            "SIGKILL worker right after acks", "Redis", env, sink_client(redis_base),
            broker_empty=lambda: client.llen(queue) == 0 and client.hlen("unacked") == 0)
    finally:
        server.stop()
    assert stuck == [], row
    # kombu's Redis transport can lose a message popped (BRPOP) by a worker killed
    # before it filed the message as unacked: such a command never ran, and its last
    # event says so (DISPATCHED). Counted as lost in the table; not this suite's issue.
    assert all(statuses == ["DISPATCHED"] for statuses in row["never_ran"].values()), row


def test_sigkill_after_ack_on_rabbitmq(redis_base, amqp_url):
    env = stack_env(amqp_url, redis_base, f"survive-{uuid.uuid4().hex[:6]}")
    row, stuck = kill_after_acks("SIGKILL worker right after acks", "RabbitMQ", env,
                                 sink_client(redis_base))
    assert stuck == [], row
    assert row["lost"] == 0, row


def test_sigkill_after_ack_on_azure(redis_base, tmp_path):
    from tests.azure.conftest import FAST, _require_azurite, azure_env
    from tests.helpers.azurite import Azurite

    server = Azurite(_require_azurite()).start()
    try:
        options = {**FAST, "queue_name_prefix": f"s{uuid.uuid4().hex[:5]}-",
                   "visibility_timeout": 5}
        queue = f"q{uuid.uuid4().hex[:6]}"
        env = {**azure_env(server, redis_base, queue, options, prefetch=1),
               "BGP_TEST_EVENTS": f"{redis_base}/{EVENTS_DB}",
               "BGP_TEST_BROKER": "azurequeue://"}

        def azure_publisher(env: dict[str, str]) -> BackgroundProcessing:
            import os

            os.environ["AZURE_STORAGE_CONNECTION_STRING"] = server.connection_string
            app = Celery(f"survive-az-{uuid.uuid4().hex[:6]}", set_as_current=False)
            app.conf.update(broker_url="azurequeue://", broker_transport_options=options,
                            task_default_queue=queue, task_ignore_result=True)
            return BackgroundProcessing(app, name=f"survive-{uuid.uuid4().hex[:6]}",
                                        event_repository=env["BGP_TEST_EVENTS"])

        row, stuck = kill_after_acks("SIGKILL worker right after acks", "Azure", env,
                                     sink_client(redis_base), app="tests.apps.survive_azure_app",
                                     count=60, kills=3, make_publisher=azure_publisher,
                                     settle=options["visibility_timeout"] + 4)
    finally:
        server.stop()
    assert stuck == [], row
    assert row["lost"] == 0, row


class Slow(EventRepository):
    """Memory store whose writes take ``delay`` seconds, or fail while ``down``."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay, self.down, self.events = delay, False, []

    def add_many(self, events):
        if self.down:
            raise ConnectionError("store down")
        time.sleep(self.delay)
        self.events.extend(events)

    def all(self, command_id):
        return [e for e in self.events if e.command_id == command_id]


def test_an_urgent_event_is_written_before_the_wait_returns_without_lingering():
    repo = Slow()
    recorder = EventRecorder(lambda: repo, "background", linger=5.0)
    cid, now = new_command_id(), utcnow()
    recorder.record(CommandEvent(cid, S.PROCESSING, now))
    started = time.monotonic()
    ticket = recorder.record(CommandEvent(cid, S.PROCESSED, now), urgent=True)
    assert recorder.wait_written(ticket)
    assert time.monotonic() - started < 2  # not the 5 s linger
    assert [e.status for e in repo.events] == [S.PROCESSING, S.PROCESSED]  # one batch

    # bgp_event_final_timeout = 0: nobody waits, the event is queued as any other
    lazy = EventRecorder(lambda: repo, "background", linger=0.3, final_timeout=0)
    started = time.monotonic()
    ticket = lazy.record(CommandEvent(cid, S.PROCESSED, utcnow()), urgent=True)
    assert not lazy.wait_written(ticket) and time.monotonic() - started < 0.2
    assert lazy.flush(5) and len(repo.events) == 3


def test_nobody_waits_for_a_failing_store_and_a_hung_one_is_waited_for_a_while():
    repo = Slow()
    repo.down = True
    recorder = EventRecorder(lambda: repo, "background", retry_for=30)
    recorder.record(CommandEvent(new_command_id(), S.PROCESSING, utcnow()))
    wait_until(lambda: recorder.stats.write_errors > 0, 5, "the store never failed")
    started = time.monotonic()
    ticket = recorder.record(CommandEvent(new_command_id(), S.PROCESSED, utcnow()),
                             urgent=True)
    assert not recorder.wait_written(ticket)  # at once: the event stays queued
    assert time.monotonic() - started < 1
    repo.down = False
    assert recorder.flush(10) and len(repo.events) == 2  # caught up when it came back

    hung = Slow(delay=3)
    slow = EventRecorder(lambda: hung, "background", final_timeout=0.3)
    started = time.monotonic()
    ticket = slow.record(CommandEvent(new_command_id(), S.PROCESSED, utcnow()), urgent=True)
    assert not slow.wait_written(ticket)
    assert 0.25 < time.monotonic() - started < 2
    assert slow.flush(10) and len(hung.events) == 1


# -- 2. malformed bgp_dispatched_at / bgp_requeues headers ---------------------------------


BAD_HEADERS = [
    {REQUEUES: "lots"},
    {REQUEUES: -3},
    {REQUEUES: [1, 2]},
    {DISPATCHED_AT: "yesterday"},
    {DISPATCHED_AT: 1e300},
    {DISPATCHED_AT: [1, 2]},
    {DISPATCHED_AT: "yesterday", REQUEUES: {"n": 1}},
]


def test_malformed_headers_are_repaired_and_events_recorded(redis_base, caplog):
    queue = f"survive-hdr-{uuid.uuid4().hex[:6]}"
    env = stack_env(f"{redis_base}/{BROKER_DB}", redis_base, queue)
    bgp = publisher(env)
    sink = sink_client(redis_base)
    key = f"headers-{uuid.uuid4().hex}"
    good_before, good_after = SlowAppend(key=key, seconds=0), SlowAppend(key=key, seconds=0)
    bad = [SlowAppend(key=key, seconds=0) for _ in BAD_HEADERS]
    name = bgp.task_name(SlowAppend)
    with caplog.at_level(logging.WARNING, logger="celery_bgp"), \
            WorkerProcess(APP, env, [queue], concurrency=2) as worker:
        bgp.dispatch(good_before)
        for command, headers in zip(bad, BAD_HEADERS, strict=True):
            # A bad stamp goes without the instance header: the publisher would restamp it.
            sent = dict(headers) if DISPATCHED_AT in headers else {INSTANCE: bgp.name,
                                                                   **headers}
            bgp.app.send_task(name, args=(encode_command(command),), task_id=command.id,
                              headers=sent, serializer="json")
        bgp.dispatch(good_after)
        everyone = [good_before, *bad, good_after]
        wait_until(lambda: set(sink.lrange(key, 0, -1)) >= {c.id for c in everyone}, 60,
                   "commands were not processed", worker.log)
        for command in everyone:
            try:
                bgp.events.wait_for(command.id, timeout=20)
            except TimeoutError as exc:
                raise AssertionError(f"{exc}\n{worker.log()[-4000:]}") from None
        log = worker.log()
    assert "Signal handler" not in log, log[-4000:]  # no receiver raised
    assert "malformed" in log  # the worker said what it repaired
    for command, headers in zip(bad, BAD_HEADERS, strict=True):
        events = bgp.events.all(command.id)
        statuses = [e.status for e in events]
        assert statuses[:2] == [S.PROCESSED, S.PROCESSING], (headers, statuses)
        if DISPATCHED_AT not in headers:
            assert statuses[2:] == [S.DISPATCHED], (headers, statuses)
        assert all(e.requeues == 0 for e in events), headers
    for command in (good_before, good_after):
        assert [e.status for e in bgp.events.all(command.id)] == [
            S.PROCESSED, S.PROCESSING, S.DISPATCHED]
    assert any("malformed" in r.getMessage() for r in caplog.records)  # publisher side


def test_publisher_side_receivers_repair_a_bad_stamp(caplog):
    """A stamp broken after ``before_task_publish`` (another receiver, a proxy) is replaced."""
    from celery_bgp.signals import _after_publish

    bgp = BackgroundProcessing(Celery("stamp", set_as_current=False), name="stamp-test",
                               event_repository="memory://stamp-test", event_write="sync")
    for stamp in ("noon", float("nan"), float("inf"), 1e300, True, {"at": 1}):
        cid = new_command_id()
        with caplog.at_level(logging.WARNING, logger="celery_bgp"):
            _after_publish(sender="bgp.x", headers={INSTANCE: "stamp-test", "id": cid,
                                                    DISPATCHED_AT: stamp, REQUEUES: "2x"},
                           body=(({"id": cid},), {}, {}), routing_key="q")
        event = bgp.events.latest(cid)
        assert event is not None and event.status is S.DISPATCHED, stamp
        assert event.requeues == 0
        assert abs((event.timestamp - utcnow()).total_seconds()) < 60

    class Request:
        bgp_dispatched_at = "tomorrow"

    assert abs((worker_timestamp(Request()) - utcnow()).total_seconds()) < 60
    # a good stamp still floors the worker's time
    Request.bgp_dispatched_at = (utcnow() + timedelta(minutes=5)).timestamp()
    assert worker_timestamp(Request()) > utcnow() + timedelta(minutes=4)
    assert "malformed" in caplog.text


# -- 3. one bad event never takes a batch down (Django store, PostgreSQL) -------------------


def _events(cid: str, start: datetime, name: str = "shop.Order", **fields) -> list:
    return [CommandEvent(cid, S.DISPATCHED, start, command_name=name,
                         command={"id": cid, **fields.pop("command", {})}, **fields),
            CommandEvent(cid, S.PROCESSING, start + timedelta(seconds=1), command_name=name),
            CommandEvent(cid, S.PROCESSED, start + timedelta(seconds=2), command_name=name)]


@django_db_mark("default")
def test_one_bad_event_never_takes_a_django_batch_down():
    require_database("default")
    from celery_bgp.contrib.django.events import DjangoDbEventRepository
    from celery_bgp.events.recorder import IDLE_AFTER

    repo = DjangoDbEventRepository()
    recorder = EventRecorder(lambda: repo, "background", retry_for=3)
    now = datetime.now(timezone.utc)
    first, last, refused = new_command_id(), new_command_id(), new_command_id()
    bad_id = CommandEvent(12345, S.PROCESSED, now, command_name="shop.Order")  # type: ignore[arg-type]
    # PostgreSQL refuses a NUL character in jsonb: the write of this one event fails alone.
    nul = _events(refused, now, command={"note": "a\x00b"})[0]
    batch = [*_events(first, now), bad_id, nul, *_events(last, now)]
    for event in batch:
        recorder.record(event)
    assert recorder.flush(20)
    for cid in (first, last):
        events = repo.all(cid)
        assert [e.status for e in events] == [S.PROCESSED, S.PROCESSING, S.DISPATCHED], cid
        assert repo.store.get(cid).state == "Succeeded"
    assert repo.all(refused) == []
    stats = recorder.stats
    assert stats.written == 6
    assert stats.dropped == 0
    assert stats.quarantined == 2
    assert sum(stats.reasons.values()) == 2
    assert any("command_id" in reason for reason in stats.reasons), stats.reasons
    assert any("DataError" in reason for reason in stats.reasons), stats.reasons
    quarantined = recorder.quarantined()
    assert {event.command_id for event, _ in quarantined} == {12345, refused}

    # The same in sync mode: the batch of one call, written inline.
    sync = EventRecorder(lambda: repo, "sync")
    other = new_command_id()
    sync.record(CommandEvent("", S.PROCESSED, now))
    for event in _events(other, now):
        sync.record(event)
    assert repo.latest(other).status is S.PROCESSED
    assert sync.stats.quarantined == 1 and sync.stats.written == 3
    time.sleep(IDLE_AFTER + 0.5)  # the writer thread closes its connection when idle
