"""The same Celery scenarios on Redis and on azurequeue:// (Azurite), with real workers.

Each scenario runs once per broker against one busy-able worker (prefork, 2 processes,
prefetch 1). Where Azure answers differently on purpose, the test says why and checks
the documented alternative (docs/azure.rst, "Celery feature: Redis / azurequeue").
"""
from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime

import pytest
from celery import Celery, chain, chord
from kombu import Connection, Consumer, Queue
from kombu.asynchronous import Hub
from kombu.exceptions import OperationalError

from tests.conftest import BACKEND_DB, BROKER_DB, SINK_DB
from tests.helpers.workers import ROOT, WorkerProcess

pytestmark = pytest.mark.integration

APP = "tests.apps.azure_parity_app"
#: Control replies while the pool is busy: Redis answers in milliseconds; azurequeue
#: polls its control queue every polling_interval (0.2 s) while it holds tasks, about
#: 0.25 s a reply. Generous for a loaded 2-core CI machine; before the event loop the
#: first reply took 6-9 s.
CONTROL_REPLY_BOUND = 2.0
#: Seconds after which an idle azurequeue worker polls at max_polling_interval.
IDLE_BACKOFF = 5.0


class Broker:
    """One broker with its worker, and a publisher app configured like the worker."""

    def __init__(self, kind: str, env: dict[str, str]) -> None:
        self.kind, self.env = kind, env
        self.queue = env["BGP_TEST_QUEUE"]
        self.worker = WorkerProcess(APP, env, [self.queue], concurrency=2)

    def app(self) -> Celery:
        app = Celery(f"parity-pub-{uuid.uuid4().hex[:6]}", set_as_current=False)
        app.conf.update(
            broker_url=self.env["BGP_TEST_BROKER"],
            broker_transport_options=json.loads(self.env["BGP_TEST_TRANSPORT_OPTIONS"]),
            result_backend=self.env["BGP_TEST_BACKEND"], task_default_queue=self.queue)
        return app

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, **self.env, "PYTHONPATH": str(ROOT)}
        return subprocess.run([sys.executable, "-m", "celery", "-A", APP, *args], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=120)

    def inspect(self, timeout: float = 5.0):
        return self.app().control.inspect(destination=[self.worker.hostname], timeout=timeout)


@pytest.fixture(scope="module", params=["redis", "azure"])
def broker(request, redis_base):
    queue = f"parity-{uuid.uuid4().hex[:6]}"
    env = {"BGP_TEST_BACKEND": f"{redis_base}/{BACKEND_DB}",
           "BGP_TEST_SINK": f"{redis_base}/{SINK_DB}", "BGP_TEST_QUEUE": queue,
           "BGP_TEST_TRANSPORT_OPTIONS": "{}"}
    if request.param == "redis":
        env["BGP_TEST_BROKER"] = f"{redis_base}/{BROKER_DB}"
    else:
        azurite = request.getfixturevalue("azurite")
        # The default polling (no FAST here): what a user gets.
        env.update(BGP_TEST_BROKER="azurequeue://",
                   AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string,
                   BGP_TEST_TRANSPORT_OPTIONS=json.dumps(
                       {"queue_name_prefix": f"p{uuid.uuid4().hex[:6]}-"}))
    b = Broker(request.param, env)
    b.worker.start()
    b.ready_at = time.monotonic()
    yield b
    b.worker.kill()


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_control_replies_while_the_pool_is_busy(broker, sink):
    """An idle worker starts a task within a second; inspect active/query_task/ping
    answer at once while both pool processes are busy."""
    # Idle long enough for azurequeue's polling to back off fully (0.2 s x1.3 .. 1 s).
    time.sleep(max(0.0, IDLE_BACKOFF - (time.monotonic() - broker.ready_at)))
    app = broker.app()
    sleep = app.signature("parity.sleep")
    key = f"busy-{uuid.uuid4().hex}"
    sent = time.monotonic()
    running = [sleep.clone(args=(6, key)).apply_async() for _ in range(2)]
    queued = [sleep.clone(args=(0.1,)).apply_async() for _ in range(4)]
    time.sleep(max(0.0, 1.0 - (time.monotonic() - sent)))
    # One second after sending: the tasks run and the worker says so.
    inspect = broker.inspect(timeout=3)
    active = wait_for(lambda: inspect.active(), 10, "an inspect active reply")
    active_ids = {t["id"] for t in active[broker.worker.hostname]}
    assert {r.id for r in running} <= active_ids, (broker.kind, active_ids)
    found = inspect.query_task(running[0].id)[broker.worker.hostname]
    assert found[running[0].id][0] == "active"
    # The pool reports a job active just before the task body runs.
    wait_for(lambda: sink.lrange(key, 0, -1) == ["started", "started"], 10, "both to run")
    latencies = []
    for _ in range(5):
        started = time.monotonic()
        replies = broker.inspect(timeout=CONTROL_REPLY_BOUND + 3).ping()
        latencies.append(time.monotonic() - started)
        assert replies and broker.worker.hostname in replies, broker.kind
    assert sink.llen(key) < 4, "the pool was not busy during the measurement"
    p50 = statistics.median(latencies)
    print(f"{broker.kind}: control reply under a busy pool p50 {p50:.3f}s max "
          f"{max(latencies):.3f}s")
    # ping waits its whole timeout for replies unless a destination list is complete
    assert max(latencies) < CONTROL_REPLY_BOUND, (broker.kind, latencies)
    app.control.revoke([r.id for r in running + queued], terminate=True, signal="SIGKILL")


def test_revoke_terminate_and_stamped_revoke(broker, sink):
    app = broker.app()
    key = f"revoke-{uuid.uuid4().hex}"
    sleep = app.signature("parity.sleep")
    victim = sleep.clone(args=(30, key)).apply_async()
    wait_for(lambda: sink.llen(key) >= 1, 20, "the task to start")
    app.control.revoke(victim.id, terminate=True, signal="SIGKILL")
    wait_for(lambda: victim.state == "REVOKED", 20, "the revoked state")
    stamped = sleep.clone(args=(30, key))
    stamped.stamp(parity_tag="drop-me")
    stamped_result = stamped.apply_async()
    wait_for(lambda: sink.llen(key) >= 2, 20, "the stamped task to start")
    app.control.revoke_by_stamped_headers({"parity_tag": "drop-me"}, terminate=True,
                                          signal="SIGKILL")
    wait_for(lambda: stamped_result.state == "REVOKED", 20, "the stamped revoke")
    assert "done" not in sink.lrange(key, 0, -1)
    # The revoked ids travel between workers (mingle's hello), on both brokers.
    reply = broker.inspect().hello("parity-peer@elsewhere", revoked=["parity-peer-id"])
    assert victim.id in reply[broker.worker.hostname]["revoked"]


def test_inspect_conf_report_and_every_inspect_answer(broker):
    inspect = broker.inspect()
    conf = inspect.conf()[broker.worker.hostname]
    assert conf["task_default_queue"] == broker.queue
    for method in ("stats", "registered", "reserved", "revoked", "active_queues", "report",
                   "scheduled", "active", "clock"):
        replies = getattr(inspect, method)()
        assert replies and replies.get(broker.worker.hostname) is not None, method
    report = broker.cli("report")
    assert report.returncode == 0, report.stdout + report.stderr
    assert "AccountKey" not in report.stdout


def test_control_commands_answer(broker, sink):
    """Remote control: consumers added and cancelled at run time, pool, limits, events."""
    app = broker.app()
    control, dest = app.control, [broker.worker.hostname]
    extra = f"{broker.queue}-extra"
    replies = control.add_consumer(extra, reply=True, destination=dest, timeout=5)
    assert replies and "ok" in replies[0][broker.worker.hostname], replies
    result = app.signature("parity.echo").clone(args=("extra",)).apply_async(queue=extra)
    assert result.get(timeout=30) == "extra"
    for reply in (
        control.cancel_consumer(extra, reply=True, destination=dest, timeout=5),
        control.rate_limit("parity.echo", "100/s", reply=True, destination=dest, timeout=5),
        control.time_limit("parity.echo", soft=60, hard=90, reply=True, destination=dest,
                           timeout=5),
        control.pool_grow(1, reply=True, destination=dest, timeout=5),
        control.pool_shrink(1, reply=True, destination=dest, timeout=5),
        control.enable_events(reply=True, destination=dest, timeout=5),
        control.disable_events(reply=True, destination=dest, timeout=5),
        control.ping(destination=dest, timeout=5),
    ):
        assert reply and broker.worker.hostname in reply[0], reply


def test_expired_task_never_runs(broker):
    """``expires`` on both; documented difference: Azure drops the expired message itself
    (its per-message time-to-live, as RabbitMQ does), Redis hands it to the worker, which
    records it as REVOKED."""
    app = broker.app()
    late = f"{broker.queue}-late"
    result = app.signature("parity.echo").clone(args=("stale",)).apply_async(
        queue=late, expires=1)
    time.sleep(2.5)  # the scenario: nobody consumes the queue until after the expiry
    if broker.kind == "azure":
        # Never received and sent without delay, so not invisible: Azure dropped it.
        # (Azurite still counts it in approximate_message_count until its cleanup.)
        with Connection("azurequeue://", transport_options=json.loads(
                broker.env["BGP_TEST_TRANSPORT_OPTIONS"])) as conn:
            assert Queue(late, routing_key=late)(conn.channel()).get(no_ack=True) is None
    dest = [broker.worker.hostname]
    assert app.control.add_consumer(late, reply=True, destination=dest, timeout=5)
    try:
        if broker.kind == "redis":
            wait_for(lambda: result.state == "REVOKED", 20, "the expired task to be revoked")
        else:
            time.sleep(1.5)  # a poll or two of the new consumer: nothing to run
            assert result.state == "PENDING"
    finally:
        app.control.cancel_consumer(late, reply=True, destination=dest, timeout=5)


def test_unreachable_broker_fails_as_fast_as_kombus_retry_policy(broker):
    """No SDK retries stacked under kombu's: a refused connection reports at once."""
    from tests.helpers.azurite import free_ports

    [port] = free_ports(1)
    if broker.kind == "redis":
        url, options = f"redis://127.0.0.1:{port}/0", {}
    else:
        endpoint = f"http://127.0.0.1:{port}/devstoreaccount1"
        url, options = "azurequeue://", {"connection_string": (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
            f"{os.environ['AZURE_STORAGE_CONNECTION_STRING'].split('AccountKey=')[1]}"
            f"QueueEndpoint={endpoint};TableEndpoint={endpoint};BlobEndpoint={endpoint};")}
    started = time.monotonic()
    with pytest.raises(OperationalError, match=r"(?i)refused"), \
            Connection(url, transport_options=options) as conn:
        conn.ensure_connection(max_retries=2, interval_start=0.2, interval_step=0.2)
    elapsed = time.monotonic() - started
    print(f"{broker.kind}: unreachable broker reported after {elapsed:.2f}s")
    assert elapsed < 3.0, elapsed  # kombu's own waits: 0.2 s + 0.4 s


def test_scheduled_task(broker, sink):
    """Redis holds a countdown task in worker memory, so ``inspect scheduled`` lists it.

    Documented difference: azurequeue keeps the delay in Azure (the message is invisible
    until due, no worker holds it), so ``inspect scheduled`` is empty there and
    ``celery bgp scheduled`` lists it instead, from the record written at publish.
    """
    app = broker.app()
    result = app.signature("parity.echo").clone(args=("later",)).apply_async(countdown=4)
    sent = time.time()
    scheduled_ids = set()
    with contextlib.suppress(AssertionError):
        scheduled = wait_for(lambda: broker.inspect().scheduled(), 5, "scheduled")
        scheduled_ids = {s["request"]["id"] for s in scheduled[broker.worker.hostname]}
    if broker.kind == "redis":
        assert result.id in scheduled_ids
        out = bgp_scheduled(app, code=1)
        assert "azurequeue:// broker only" in out and "inspect scheduled" in out
    else:
        assert result.id not in scheduled_ids
        [listed] = [m for m in json.loads(bgp_scheduled(app))["scheduled"]
                    if m["task_id"] == result.id]
        assert listed["queue"] == broker.queue and listed["task"] == "parity.echo"
        due = datetime.fromisoformat(listed["due"]).timestamp()
        assert sent + 2 < due < sent + 7, (sent, listed)
    assert result.get(timeout=30) == "later"
    if broker.kind == "azure":  # received: the record is dropped
        wait_for(lambda: result.id not in bgp_scheduled(app), 10, "the record to go")


def bgp_scheduled(app: Celery, code: int = 0) -> str:
    from celery.bin.base import CLIContext
    from click.testing import CliRunner

    from celery_bgp.cli import bgp as bgp_cli

    result = CliRunner().invoke(bgp_cli, ["scheduled", "--json"],
                                obj=CLIContext(app, True, None), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def test_canvas_over_64_kib(broker):
    """A chain whose first message carries a chord of large arguments (> 64 KiB)."""
    app = broker.app()
    echo, total = app.signature("parity.echo"), app.signature("parity.total")
    header = [app.signature("parity.echo", args=("x" * 30_000,), immutable=True)
              for _ in range(3)]
    canvas = chain(echo.clone(args=(1,)), chord(header, total.clone()))
    assert canvas.apply_async().get(timeout=60) == 90_000


def _hub_consume(conn: Connection, queue: Queue, count: int, timeout: float = 30.0) -> int:
    """Consume ``count`` messages through kombu's event loop, acking each from a thread."""
    hub = Hub()
    acked: list[threading.Thread] = []
    conn.transport.register_with_event_loop(conn.connection, hub)
    channel = conn.channel()
    channel.basic_qos(0, 2, False)

    def on_message(body, message):
        thread = threading.Thread(target=message.ack)
        thread.start()
        acked.append(thread)

    consumer = Consumer(channel, [queue], callbacks=[on_message])
    consumer.consume()
    loop = hub.create_loop()
    deadline = time.monotonic() + timeout
    try:
        while len(acked) < count and time.monotonic() < deadline:
            next(loop)
    finally:
        for thread in acked:
            thread.join(10)
        consumer.cancel()
        hub.close()
    receiver = getattr(channel, "receiver", None)
    if len(acked) < count and receiver is not None:
        print("receiver", receiver.thread.is_alive(), receiver._pending,
              conn.transport._inbox and len(conn.transport._inbox._items))
    return len(acked)


def test_ack_from_another_thread_under_the_event_loop(broker):
    """kombu's contract: a message acked from another thread is gone, the next one flows."""
    name = f"thread-ack-{uuid.uuid4().hex[:6]}"
    options = json.loads(broker.env["BGP_TEST_TRANSPORT_OPTIONS"])
    with Connection(broker.env["BGP_TEST_BROKER"], transport_options=options) as conn:
        queue = Queue(name, routing_key=name)
        with conn.Producer() as producer:
            for i in range(6):  # three times the prefetch: only acks free the slots
                producer.publish({"n": i}, routing_key=name, declare=[queue])
        assert _hub_consume(conn, queue, 6) == 6
        if broker.kind == "azure":
            assert conn.transport.leases.flush()
    with Connection(broker.env["BGP_TEST_BROKER"], transport_options=options) as conn:
        channel = conn.channel()
        # Deleted, not only invisible: Azure's count includes leased messages.
        wait_for(lambda: channel._size(name) == 0, 10, "the acked messages to be deleted")
        assert queue(channel).get(no_ack=True) is None  # empty get: None on both
        queue(channel).delete()


def test_claim_check_is_on_by_default_and_reports_a_missing_blob_endpoint(azurite):
    """Default container, created on first use; without a blob endpoint, a clear error."""
    from celery_bgp.transport.options import DEFAULT_CLAIM_CHECK_CONTAINER
    from celery_bgp.transport.storage import MessageTooLarge

    prefix = f"c{uuid.uuid4().hex[:6]}-"
    with Connection("azurequeue://", transport_options={"queue_name_prefix": prefix}) as conn:
        queue = Queue("big", routing_key="big")
        conn.Producer().publish({"data": "x" * 70_000}, routing_key="big", declare=[queue])
        blobs = conn.transport.clients.blob_service.get_container_client(
            DEFAULT_CLAIM_CHECK_CONTAINER)
        assert any(b.name.startswith(f"{prefix}big/") for b in blobs.list_blobs())
        message = queue(conn.channel()).get()
        assert message.payload == {"data": "x" * 70_000}
        message.ack()
    queue_only = azurite.connection_string.split("BlobEndpoint=")[0] + (
        f"QueueEndpoint={azurite.queue_url};TableEndpoint={azurite.table_url};")
    with Connection("azurequeue://", transport_options={
            "connection_string": queue_only, "queue_name_prefix": prefix}) as conn, \
            pytest.raises(MessageTooLarge, match="no Blob Storage endpoint"):
        conn.Producer().publish({"data": "x" * 70_000}, routing_key="big",
                                declare=[Queue("big", routing_key="big")])
