"""Hostile messages against real ``celery worker`` processes on Redis, RabbitMQ and Azurite.

Each scenario publishes one raw message with kombu (no Celery producer to tidy it up:
headers missing or of the wrong type, a bad ETA, a huge body, a compression bomb, a
protocol-1 pickle ...), then checks what SECURITY.rst promises: the worker process is
alive and still consumes (a good command sent afterwards is PROCESSED), the bad message
is gone from the queue (dead-lettered to ``<queue>-dlq`` on RabbitMQ, in the
``-poison`` queue with its reason on Azure, dropped on Redis), the message's command
gets an ERROR event when it names a command task and an id, and the worker's main
process stays small after a compression bomb. Every scenario adds a row to the fault
table printed at the end of the run.
"""
from __future__ import annotations

import bz2
import dataclasses
import json
import os
import pickle
import time
import uuid
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest
import redis
from celery import Celery
from kombu import Connection, Producer

from celery_bgp import BackgroundProcessing, EventStatus
from celery_bgp.transport import codec
from celery_bgp.transport.poison import PoisonQueues
from tests.apps import hostile_conf
from tests.apps.commands import Echo
from tests.conftest import BROKER_DB, EVENTS_DB, stack_env
from tests.helpers.azurite import Azurite, find_azurite
from tests.helpers.faults import record
from tests.helpers.servers import IN_CI
from tests.helpers.workers import WorkerProcess

pytestmark = pytest.mark.integration

ECHO = "bgp.tests.apps.commands.Echo"
MARKER = "bgp_test_marker"
#: The worker's main process must stay below this after a compression bomb.
RSS_LIMIT = 300 * 1024 * 1024
#: Uncompressed size of the bomb: ~400 KB of zlib that would inflate to 400 MB.
BOMB_BYTES = 400 * 1024 * 1024
#: Seconds a good command may take after a hostile one (lower it to see failures quickly).
GOOD_TIMEOUT = float(os.environ.get("BGP_HOSTILE_TIMEOUT", "60"))
S = EventStatus


# -- messages ---------------------------------------------------------------------------

def echo_body(command_id: str | None, text: str = "hostile") -> bytes:
    payload = {"id": command_id or uuid.uuid4().hex, "text": text}
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    return json.dumps([[payload], {}, embed]).encode()


_DROP = object()


def task_headers(command_id: Any, task: Any = ECHO, **changes: Any) -> dict[str, Any]:
    """Protocol-2 headers as Celery writes them, with ``changes`` (``_DROP`` removes)."""
    headers = {"lang": "py", "task": task, "id": command_id, "shadow": None, "eta": None,
               "expires": None, "group": None, "group_index": None, "retries": 0,
               "timelimit": [None, None], "root_id": command_id, "parent_id": None,
               "argsrepr": "(Echo(),)", "kwargsrepr": "{}", "origin": "hostile@test",
               "ignore_result": True}
    headers.update(changes)
    return {k: v for k, v in headers.items() if v is not _DROP}


def zlib_bomb(size: int) -> bytes:
    """zlib of ``size`` zero bytes, built in chunks (never ``size`` bytes in memory)."""
    packer = zlib.compressobj(9)
    chunk = bytes(1024 * 1024)
    parts = [packer.compress(chunk) for _ in range(size // len(chunk))]
    parts.append(packer.flush())
    return b"".join(parts)


class Trap:
    """Unpickling this creates a file: proof that pickle was never loaded."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


@dataclasses.dataclass
class Raw:
    """One raw message to publish."""

    body: bytes
    headers: dict[str, Any]
    content_type: str = "application/json"
    content_encoding: str = "utf-8"


@dataclasses.dataclass
class Scenario:
    name: str
    build: Callable[[str, Path], Raw]  # (command id, tmp dir) -> message
    reason: str  # what the refusal says (in the dead-letter reason / ERROR event)
    event: bool = True  # names a command task and a usable id: an ERROR event is due
    trap: bool = False  # a pickle trap that must not fire
    bomb: bool = False


SCENARIOS = [
    Scenario("no id header", lambda i, _: Raw(echo_body(i), task_headers(_DROP)),
             "'id' header is missing", event=False),
    Scenario("id of wrong type", lambda i, _: Raw(echo_body(i), task_headers(12345)),
             "'id' header must be a string", event=False),
    Scenario("task header missing",
             lambda i, _: Raw(echo_body(i), task_headers(i, task=_DROP)),
             "protocol 1", event=False),
    Scenario("task header not a string",
             lambda i, _: Raw(echo_body(i), task_headers(i, task=["bgp.x"])),
             "'task' header must be a string", event=False),
    Scenario("unknown task without id",
             lambda i, _: Raw(echo_body(i), task_headers(_DROP, task="tests.hostile.nosuch")),
             "'id' header is missing", event=False),
    Scenario("own task, body of the wrong shape",
             lambda i, _: Raw(b"[1, 2]", task_headers(i, task="tests.hostile.plain")),
             "could not take this message", event=False),
    Scenario("bad eta", lambda i, _: Raw(echo_body(i), task_headers(i, eta="not-a-date")),
             "'eta' header"),
    Scenario("bad expires", lambda i, _: Raw(echo_body(i), task_headers(i, expires=[1])),
             "'expires' header"),
    Scenario("retries of wrong type",
             lambda i, _: Raw(echo_body(i), task_headers(i, retries="many")),
             "'retries' header"),
    Scenario("timelimit of wrong shape",
             lambda i, _: Raw(echo_body(i), task_headers(i, timelimit=[1, 2, 3])),
             "'timelimit' header"),
    Scenario("argsrepr of wrong type",
             lambda i, _: Raw(echo_body(i), task_headers(i, argsrepr={"a": 1})),
             "'argsrepr' header"),
    Scenario("huge body (20 MB)",
             lambda i, _: Raw(echo_body(i, "x" * (20 * 1024 * 1024)), task_headers(i)),
             "bytes, above"),
    Scenario("compression bomb (zlib, 400 MB of zeros)",
             lambda i, _: Raw(zlib_bomb(BOMB_BYTES),
                              task_headers(i, compression="application/x-gzip")),
             "decompresses to more than", bomb=True),
    Scenario("compression the app did not enable (bzip2)",
             lambda i, _: Raw(bz2.compress(echo_body(i)),
                              task_headers(i, compression="application/x-bz2")),
             "not enabled"),
    Scenario("undecodable compressed body",
             lambda i, _: Raw(b"this is not zlib",
                              task_headers(i, compression="application/x-gzip")),
             "undecodable"),
    Scenario("protocol-1 pickle (accept_content has pickle)",
             lambda i, tmp: Raw(pickle.dumps({"task": ECHO, "id": i, "args": [Trap(
                 str(tmp / f"unpickled-{i}"))], "kwargs": {}}), {},
                 content_type="application/x-python-serialize", content_encoding="binary"),
             "protocol 1", event=False, trap=True),
    Scenario("bgp.job with wrong arguments",
             lambda i, _: Raw(json.dumps([[1, 2, 3], {}, {}]).encode(),
                              task_headers(i, task="bgp.job")),
             "bgp.job takes", event=False),
]


# -- the stack ------------------------------------------------------------------------

@dataclasses.dataclass
class Hostile:
    broker: str
    env: dict[str, str]
    queue: str
    worker: WorkerProcess
    transport_options: dict[str, Any]
    bgp: BackgroundProcessing

    def connection(self) -> Connection:
        return Connection(self.env["BGP_TEST_BROKER"], transport_options=self.transport_options)

    def ensure_worker(self) -> None:
        """A worker an earlier scenario killed is replaced, so each scenario stands alone."""
        if self.worker.proc is None or self.worker.proc.poll() is not None:
            self.worker = WorkerProcess("tests.apps.hostile_app", self.env, [self.queue],
                                        concurrency=1).start()

    def publish(self, raw: Raw, marker: str) -> None:
        headers = {**raw.headers, MARKER: marker}
        with self.connection() as conn:
            Producer(conn.default_channel).publish(
                raw.body, exchange=self.queue, routing_key=self.queue,
                declare=[hostile_conf.task_queue(self.queue, self.env["BGP_TEST_BROKER"])],
                serializer=None, content_type=raw.content_type,
                content_encoding=raw.content_encoding, headers=headers, retry=True)

    def good(self, timeout: float = GOOD_TIMEOUT) -> bool:
        """Dispatch a good command; True when the worker PROCESSED it in time."""
        command = Echo(text="after the hostile message")
        self.bgp.dispatch(command)
        try:
            return self.bgp.events.wait_for(command.id, timeout=timeout).status is S.PROCESSED
        except TimeoutError:
            return False

    # where the bad message went ---------------------------------------------------------

    def dead_letter(self, marker: str, timeout: float = 15) -> dict[str, Any] | None:
        """What the broker kept of the dead-lettered message (None: not found)."""
        deadline = time.monotonic() + timeout
        while True:
            found = {"redis": self._redis_gone, "amqp": self._amqp_dlq,
                     "azure": self._azure_poison}[self.broker](marker)
            if found is not None or time.monotonic() > deadline:
                return found
            time.sleep(0.3)

    def _redis_gone(self, marker: str) -> dict[str, Any] | None:
        client = redis.Redis.from_url(self.env["BGP_TEST_BROKER"])
        queued = any(marker.encode() in item for item in client.lrange(self.queue, 0, -1))
        held = any(marker.encode() in item for item in client.hvals("unacked"))
        return None if queued or held else {"reason": None}

    def _amqp_dlq(self, marker: str) -> dict[str, Any] | None:
        with self.connection() as conn:
            channel = conn.default_channel
            while True:
                message = channel.basic_get(hostile_conf.dead_letter_queue(self.queue),
                                            no_ack=True)
                if message is None:
                    return None
                headers = message.headers or {}
                if headers.get(MARKER) == marker:
                    return {"reason": None, "x-death": headers.get("x-death")}

    def _azure_poison(self, marker: str) -> dict[str, Any] | None:
        with self.connection() as conn:
            conn.ensure_connection(max_retries=3)
            poison = PoisonQueues(conn)
            for entry in poison.list(self.queue):
                envelope = codec.decode_text(entry.text)
                ref = codec.claim_check_ref(envelope)
                if ref is not None:
                    envelope = codec.parse_envelope(conn.transport.storage.download_blob(
                        ref["container"], ref["blob"]))
                if (envelope.get("headers") or {}).get(MARKER) == marker:
                    poison.purge(self.queue, [entry.id])
                    return {"reason": entry.reason}
        return None


def _publisher(env: dict[str, str]) -> BackgroundProcessing:
    app = Celery(f"hostile-pub-{uuid.uuid4().hex[:6]}", set_as_current=False)
    hostile_conf.configure(app, env)
    return BackgroundProcessing(app, name=f"pub-{uuid.uuid4().hex[:6]}",
                                event_repository=env["BGP_TEST_EVENTS"])


@pytest.fixture(scope="module")
def azurite_server():
    exe = find_azurite()
    if exe is None:
        message = "azurite not found on PATH or in node_modules/.bin (run `npm install`)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    server = Azurite(exe).start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["redis", "amqp", "azure"])
def hostile(request, redis_base):
    queue = f"bgp-hostile-{uuid.uuid4().hex[:8]}"
    options: dict[str, Any] = {}
    if request.param == "redis":
        env = stack_env(f"{redis_base}/{BROKER_DB}", redis_base, queue)
    elif request.param == "amqp":
        env = stack_env(request.getfixturevalue("amqp_url"), redis_base, queue)
        with Connection(env["BGP_TEST_BROKER"]) as conn:
            conn.default_channel.queue_declare(hostile_conf.dead_letter_queue(queue),
                                               durable=True, auto_delete=False)
    else:
        server = request.getfixturevalue("azurite_server")
        options = {"polling_interval": 0.05, "max_polling_interval": 0.5,
                   "visibility_timeout": 30, "queue_name_prefix": "h-",
                   "connection_string": server.connection_string,
                   "blob_container": "bgp-hostile"}
        env = {**stack_env("azurequeue://", redis_base, queue),
               "BGP_TEST_TRANSPORT_OPTIONS": json.dumps(options)}
    env["BGP_TEST_EVENTS"] = f"{redis_base}/{EVENTS_DB}"
    worker = WorkerProcess("tests.apps.hostile_app", env, [queue], concurrency=1).start()
    stack = Hostile(request.param, env, queue, worker, options, _publisher(env))
    yield stack
    stack.worker.stop()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_a_hostile_message_is_dead_lettered_and_the_worker_goes_on(hostile, scenario,
                                                                     tmp_path):
    hostile.ensure_worker()
    assert hostile.good(), hostile.worker.log()[-3000:]  # consuming before
    command_id, marker = uuid.uuid4().hex, uuid.uuid4().hex
    raw = scenario.build(command_id, tmp_path)
    seen_before = len(hostile.worker.log())
    hostile.publish(raw, marker)
    del raw
    processed = hostile.good()
    alive = hostile.worker.proc.poll() is None
    rss = psutil.Process(hostile.worker.proc.pid).memory_info().rss if alive else 0
    dead = hostile.dead_letter(marker)
    good_id = f"good-after-{marker}"
    record(f"hostile: {scenario.name}", [good_id, f"bad-{marker}"],
           ([good_id] if processed else []) + ([f"bad-{marker}"] if dead else []),
           stuck=0 if dead else 1, broker=hostile.broker)
    log = hostile.worker.log()
    assert alive, log[-4000:]
    assert processed, log[-4000:]
    assert dead is not None, f"message not dead-lettered (still queued, or acked)\n{log[-4000:]}"
    assert scenario.reason in log[seen_before:], log[-4000:]  # logged for this message
    if hostile.broker == "azure":
        assert scenario.reason in (dead["reason"] or ""), dead
    if hostile.broker == "amqp":
        assert dead["x-death"], dead  # rejected by the worker, dead-lettered by RabbitMQ
    if scenario.event:
        event = hostile.bgp.events.wait_for(command_id, timeout=10)
        assert event.status is S.ERROR
        assert scenario.reason in event.error.message, event.error.message
        assert event.reason == "rejected"
    else:
        assert hostile.bgp.events.latest(command_id) is None or scenario.name.startswith(
            "bgp.job")
    if scenario.trap:
        assert not (tmp_path / f"unpickled-{command_id}").exists()
    if scenario.bomb:
        print(f"worker main process RSS after the bomb: {rss / 2**20:.0f} MiB")
        assert rss < RSS_LIMIT, f"worker RSS {rss / 2**20:.0f} MiB after the bomb"


def test_headers_named_like_what_the_worker_keeps_per_message_are_not_taken_for_it(hostile):
    """Celery makes every header of a message an attribute of its task's request, where
    the worker's event receivers keep what one message's events share. A message whose
    headers carry those names (``_bgp_facts``, ``_bgp_floor``) must still get its own
    events, with its own id, name and time: no event under another command's id."""
    hostile.ensure_worker()
    command_id, victim, marker = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    forged = {"command_id": victim, "command_name": "forged", "worker": "forged",
              "retries": 0, "requeues": 0}
    future = {"__type__": "datetime", "__value__": "2999-01-01T00:00:00+00:00"}  # kombu's json
    hostile.publish(Raw(echo_body(command_id), task_headers(
        command_id, _bgp_facts=[forged, future], _bgp_floor=[future])), marker)
    final = hostile.bgp.events.wait_for(command_id, timeout=GOOD_TIMEOUT)
    assert final.status is S.PROCESSED, final
    events = hostile.bgp.events.all(command_id)
    assert {e.status for e in events} >= {S.PROCESSING, S.PROCESSED}, events
    assert {e.command_name for e in events} == {ECHO.removeprefix("bgp.")}, events
    assert "forged" not in {e.worker for e in events}, events
    latest = datetime.now(timezone.utc) + timedelta(minutes=5)
    assert all(e.timestamp < latest for e in events), [e.timestamp for e in events]
    assert hostile.bgp.events.latest(victim) is None


def test_a_compressed_command_the_app_enabled_still_runs(hostile):
    hostile.ensure_worker()
    command = Echo(text="z" * 50_000)
    hostile.bgp.dispatch(command, compression="gzip")
    assert hostile.bgp.events.wait_for(command.id, timeout=60).status is S.PROCESSED



# -- the guard without a broker ------------------------------------------------------------

class _Channel:
    """Records what the guard did with a message (``dead_letter``: as on azurequeue://)."""

    def __init__(self, azure: bool = False) -> None:
        self.rejected: list[tuple[Any, bool]] = []
        self.moved: list[str] = []
        if azure:
            self.dead_letter = lambda tag, reason, count: self.moved.append(reason)

    def basic_reject(self, tag: Any, requeue: bool = False) -> None:
        self.rejected.append((tag, requeue))


class _BrokerDown(Exception):
    pass


@pytest.fixture
def guard():
    from kombu import Message

    from celery_bgp.worker import MessageGuard
    from tests.apps import commands

    app = Celery(f"guard-{uuid.uuid4().hex[:6]}", set_as_current=False)
    bgp = BackgroundProcessing(app, name=f"guard-{uuid.uuid4().hex[:6]}",
                               event_repository="memory://", event_write="sync")
    bgp.register_handlers(commands)
    consumer = SimpleNamespace(app=app, connection_errors=(_BrokerDown,),
                               channel_errors=())
    guard = MessageGuard(consumer)
    guard.start()

    def message(headers, body=None, azure=False, content_type="application/json"):
        return Message(body=body or echo_body(None), content_type=content_type,
                       content_encoding="utf-8", headers=headers, delivery_tag="t1",
                       channel=_Channel(azure))

    return SimpleNamespace(guard=guard, bgp=bgp, message=message)


def test_a_valid_message_goes_straight_to_celery(guard):
    seen = []
    handler = guard.guard.wrap(seen.append)
    message = guard.message(task_headers(uuid.uuid4().hex))
    handler(message)
    assert seen == [message] and message.channel.rejected == []


def test_a_message_without_id_never_reaches_celery(guard):
    seen = []
    message = guard.message(task_headers(_DROP), azure=True)
    guard.guard.wrap(seen.append)(message)
    assert seen == []
    assert message.channel.rejected == [("t1", False)]
    assert message.channel.moved == ["the 'id' header is missing"]


def test_a_bad_header_naming_a_command_records_an_error_event(guard):
    command_id = uuid.uuid4().hex
    message = guard.message(task_headers(command_id, timelimit="forever"))
    guard.guard.wrap(lambda m: pytest.fail("reached Celery"))(message)
    event = guard.bgp.events.latest(command_id)
    assert event.status is S.ERROR and "'timelimit' header" in event.error.message
    assert event.command_name == "tests.apps.commands.Echo"


def test_what_celery_raises_is_caught_but_connection_errors_are_not(guard):
    def celery(message):
        raise KeyError("id")

    message = guard.message(task_headers(uuid.uuid4().hex))
    guard.guard.wrap(celery)(message)
    assert message.channel.rejected == [("t1", False)]

    def broker_down(message):
        raise _BrokerDown()

    with pytest.raises(_BrokerDown):
        guard.guard.wrap(broker_down)(guard.message(task_headers(uuid.uuid4().hex)))


def test_a_refused_compression_is_dead_lettered_with_its_reason(guard):
    from celery_bgp.inflate import CompressionRefused

    command_id = uuid.uuid4().hex
    message = guard.message(task_headers(command_id, compression="application/x-bz2"),
                            azure=True)
    guard.guard.on_decode_error(message, CompressionRefused("not enabled here"))
    assert message.channel.moved == ["not enabled here"]
    assert guard.bgp.events.latest(command_id).error.message == "not enabled here"


def test_protocol_1_is_json_only_and_checked_like_headers(guard):
    pickled = guard.message({}, body=pickle.dumps({"task": ECHO}),
                            content_type="application/x-python-serialize")
    guard.guard.wrap(lambda m: pytest.fail("reached Celery"))(pickled)
    assert pickled.channel.rejected == [("t1", False)]
    seen = []
    good = guard.message({}, body=json.dumps({"task": ECHO, "id": "x", "args": [],
                                              "kwargs": {}}).encode())
    guard.guard.wrap(seen.append)(good)
    assert seen == [good]
    bad = guard.message({}, body=json.dumps({"task": ECHO, "id": "x", "eta": "soon"}).encode())
    guard.guard.wrap(seen.append)(bad)
    assert seen == [good] and bad.channel.rejected == [("t1", False)]


def test_every_app_with_background_processing_gets_the_guard():
    from celery_bgp.worker import MessageGuardStep

    app = Celery(f"steps-{uuid.uuid4().hex[:6]}", set_as_current=False)
    BackgroundProcessing(app, name=f"steps-{uuid.uuid4().hex[:6]}")
    assert MessageGuardStep in app.steps["consumer"]


def test_the_message_limit_follows_the_payload_limit_unless_set():
    from celery_bgp.exceptions import ImproperlyConfigured
    from celery_bgp.worker import message_limit

    def limit(**options):
        app = Celery(f"limit-{uuid.uuid4().hex[:6]}", set_as_current=False)
        return message_limit(BackgroundProcessing(app, name=uuid.uuid4().hex, **options))

    assert limit() == 8 * 1024 * 1024
    assert limit(max_payload_bytes=1000) == 8000
    assert limit(max_payload_bytes=0) is None
    assert limit(max_message_bytes=5000) == 5000
    assert limit(max_message_bytes=0) is None
    with pytest.raises(ImproperlyConfigured, match="bgp_max_message_bytes"):
        limit(max_message_bytes="big")
