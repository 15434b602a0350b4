"""Commands end to end through a real ``celery worker`` on Redis and on RabbitMQ."""
from __future__ import annotations

import pickle
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from celery import chain, chord, group
from kombu import Connection, Exchange, Producer

from celery_bgp import EventStatus, Priority
from tests.apps.commands import (
    Append,
    AsyncEcho,
    Echo,
    Fail,
    Flaky,
    Greet,
    Sleep,
    WhereAmI,
)
from tests.helpers.waiting import wait_for

pytestmark = pytest.mark.integration

S = EventStatus


def statuses(bgp, command_id):
    return [e.status for e in bgp.events.all(command_id)]


def test_dispatch_runs_the_handler_and_records_its_life(stack):
    bgp = stack.publisher()
    command = Echo(text="hello")
    result = bgp.dispatch(command)
    assert result.id == command.id
    assert result.get(timeout=20) == "hello"
    final = bgp.events.wait_for(command.id)
    assert final.status is S.PROCESSED
    events = bgp.events.all(command.id)
    assert [e.status for e in events] == [S.PROCESSED, S.PROCESSING, S.DISPATCHED]
    dispatched, processing = events[2], events[1]
    assert dispatched.command["text"] == "hello"
    assert dispatched.command_name == "tests.apps.commands.Echo"
    assert processing.worker == stack.worker.hostname
    assert events[0].timestamp >= processing.timestamp > dispatched.timestamp


def test_the_payload_is_stored_once_and_a_foreign_message_still_shows_it(stack):
    """DISPATCHED carries the command; PROCESSING does not repeat it, unless no
    celery-bgp dispatcher recorded a DISPATCHED (a message sent by other means)."""
    bgp = stack.publisher()
    command = Echo(text="once")
    bgp.dispatch(command).get(timeout=20)
    bgp.events.wait_for(command.id)
    by_status = {e.status: e for e in bgp.events.all(command.id)}
    assert by_status[S.DISPATCHED].command["text"] == "once"
    assert by_status[S.PROCESSING].command is None

    foreign = uuid.uuid4().hex
    bgp.app.send_task("bgp.tests.apps.commands.Echo", args=({"id": foreign, "text": "x"},),
                      task_id=foreign)
    assert bgp.events.wait_for(foreign).status is S.PROCESSED
    by_status = {e.status: e for e in bgp.events.all(foreign)}
    assert S.DISPATCHED not in by_status
    assert by_status[S.PROCESSING].command == {"id": foreign, "text": "x"}


def test_async_class_handler(stack):
    bgp = stack.publisher()
    command = AsyncEcho(text="quiet")
    assert bgp.dispatch(command).get(timeout=20) == "QUIET"
    assert bgp.events.wait_for(command.id).status is S.PROCESSED


def test_handler_class_is_built_by_the_factory(stack):
    bgp = stack.publisher()
    assert bgp.dispatch(Greet(name="Ada")).get(timeout=20) == "Bonjour, Ada"


def test_failure_records_error_with_type_message_and_traceback(stack):
    bgp = stack.publisher()
    command = Fail(message="no luck")
    bgp.dispatch(command)
    event = bgp.events.wait_for(command.id)
    assert event.status is S.ERROR
    assert event.error.type == "tests.apps.commands.Boom"
    assert event.error.message == "no luck"
    assert "raise Boom(command.message)" in event.error.traceback
    assert statuses(bgp, command.id) == [S.ERROR, S.PROCESSING, S.DISPATCHED]


def test_celery_retries_show_as_retrying(stack, sink):
    bgp = stack.publisher()
    command = Flaky(key=f"flaky-{uuid.uuid4().hex}", failures=2)
    assert bgp.dispatch(command).get(timeout=30) == 3
    bgp.events.wait_for(command.id)
    # The attempts may run in different pool processes, each writing its events in its
    # own batches (bgp_event_linger): the earlier ones can land after the final one.
    wait_for(lambda: statuses(bgp, command.id).count(S.RETRYING) == 2, 5,
             lambda: f"both RETRYING events; seen {statuses(bgp, command.id)}")
    seen = statuses(bgp, command.id)
    assert seen[0] is S.PROCESSED
    assert seen.count(S.PROCESSING) == 3
    assert seen.count(S.DISPATCHED) == 1
    retrying = [e for e in bgp.events.all(command.id) if e.status is S.RETRYING]
    assert retrying[0].error.type == "tests.apps.commands.FlakyError"


def test_countdown_delays_processing(stack):
    bgp = stack.publisher()
    command = Echo(text="later")
    started = time.monotonic()
    bgp.dispatch(command, countdown=2)
    bgp.events.wait_for(command.id)
    assert time.monotonic() - started >= 1.9


def test_expired_command_is_cancelled(stack):
    bgp = stack.publisher()
    command = Echo(text="too late")
    bgp.dispatch(command, expires=datetime.now(timezone.utc) - timedelta(seconds=5))
    event = bgp.events.wait_for(command.id)
    assert event.status is S.CANCELLED
    assert event.reason == "expired"


def test_cancel_before_processing(stack):
    bgp = stack.publisher()
    command = Echo(text="never")
    bgp.dispatch(command, countdown=3)
    bgp.events.wait_for(command.id, statuses=(S.DISPATCHED,))
    bgp.cancel(command.id)
    event = bgp.events.wait_for(command.id, timeout=20)
    assert event.status is S.CANCELLED
    assert S.PROCESSING not in statuses(bgp, command.id)


def test_chain_runs_in_order_without_the_caller_waiting(stack, sink):
    bgp = stack.publisher()
    key = f"chain-{uuid.uuid4().hex}"
    steps = [Append(key=key, item=str(i)) for i in range(4)]
    started = time.monotonic()
    chain(*(bgp.signature(c) for c in steps)).apply_async()
    assert time.monotonic() - started < 1.0
    bgp.events.wait_for(steps[-1].id, timeout=30)
    assert sink.lrange(key, 0, -1) == ["0", "1", "2", "3"]
    # Each step's end is written without lingering (its next step is already sent), but
    # by its own pool process: it may land a moment after a later step's.
    for step in steps:
        assert bgp.events.wait_for(step.id, timeout=5).status is S.PROCESSED


def test_group_and_chord(stack, sink):
    bgp = stack.publisher()
    key = f"chord-{uuid.uuid4().hex}"
    members = [Append(key=key, item=f"m{i}") for i in range(3)]
    after = Append(key=key, item="after")
    group(bgp.signature(c) for c in members).apply_async()
    for member in members:
        assert bgp.events.wait_for(member.id).status is S.PROCESSED
    chord([bgp.signature(Append(key=key, item=f"c{i}")) for i in range(2)])(
        bgp.signature(after)
    )
    assert bgp.events.wait_for(after.id, timeout=30).status is S.PROCESSED
    assert sink.lrange(key, -1, -1) == ["after"]


def test_link_error_runs_on_failure(stack, sink):
    bgp = stack.publisher()
    key = f"errback-{uuid.uuid4().hex}"
    on_error = Append(key=key, item="handled")
    failing = Fail(message="for the errback")
    bgp.dispatch(failing, link_error=bgp.signature(on_error))
    assert bgp.events.wait_for(failing.id).status is S.ERROR
    assert bgp.events.wait_for(on_error.id).status is S.PROCESSED
    assert sink.lrange(key, 0, -1) == ["handled"]


def test_routing_options_reach_celery(stack):
    routed = f"{stack.queue}-routed"
    assert stack.publisher().dispatch(WhereAmI(), queue=routed).get(timeout=20) == routed
    bgp = stack.publisher()
    bgp.app.conf.task_routes = {"bgp.tests.apps.commands.WhereAmI": {"queue": routed}}
    assert bgp.dispatch(WhereAmI(), priority=Priority.HIGH).get(timeout=20) == routed
    assert bgp.dispatch(WhereAmI(), queue=stack.queue).get(timeout=20) == stack.queue


def test_commands_are_ordinary_tasks_for_celery_inspect(stack):
    bgp = stack.publisher()
    registered = bgp.app.control.inspect(
        destination=[stack.worker.hostname], timeout=5
    ).registered()
    names = registered[stack.worker.hostname]
    assert "bgp.tests.apps.commands.Echo" in names
    assert "bgp.tests.apps.commands.Greet" in names


def _publish_raw(stack, body, content_type, command_id, task, serializer=None):
    with Connection(stack.env["BGP_TEST_BROKER"]) as conn:
        producer = Producer(conn)
        producer.publish(
            body,
            exchange=Exchange(stack.queue, type="direct"),
            routing_key=stack.queue,
            serializer=serializer,
            content_type=None if serializer else content_type,
            content_encoding=None if serializer else "utf-8",
            headers={"id": command_id, "task": task, "bgp": "default", "lang": "py",
                     "retries": 0, "argsrepr": "", "kwargsrepr": ""},
        )


def test_unknown_command_type_is_an_error_and_the_worker_goes_on(stack):
    bgp = stack.publisher()
    command_id = uuid.uuid4().hex
    bgp.app.send_task("bgp.tests.apps.commands.NoSuchCommand", args=({"id": command_id},),
                      task_id=command_id, headers={"bgp": "default"})
    event = bgp.events.wait_for(command_id)
    assert event.status is S.ERROR
    assert "unknown command type" in event.error.message
    assert bgp.dispatch(Echo(text="still alive")).get(timeout=20) == "still alive"


def test_missing_field_is_an_error_naming_the_field(stack):
    bgp = stack.publisher()
    command_id = uuid.uuid4().hex
    bgp.app.send_task("bgp.tests.apps.commands.Echo", args=({"id": command_id},),
                      task_id=command_id)
    event = bgp.events.wait_for(command_id)
    assert event.status is S.ERROR
    assert event.error.type == "celery_bgp.exceptions.InvalidCommand"
    assert "text: Field required" in event.error.message
    assert bgp.dispatch(Echo(text="next")).get(timeout=20) == "next"


def test_invalid_json_body_is_rejected_with_an_error(stack):
    bgp = stack.publisher()
    command_id = uuid.uuid4().hex
    _publish_raw(stack, b"{not json", "application/json", command_id,
                 "bgp.tests.apps.commands.Echo")
    event = bgp.events.wait_for(command_id)
    assert event.status is S.ERROR
    assert "not valid JSON" in event.error.message
    assert bgp.dispatch(Echo(text="after garbage")).get(timeout=20) == "after garbage"


class _Trap:
    """Unpickling this would create a file: proof that pickle was never loaded."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_pickle_is_never_accepted_for_commands(stack, tmp_path):
    bgp = stack.publisher()
    command_id = uuid.uuid4().hex
    trap = tmp_path / "unpickled"
    body = pickle.dumps(([_Trap(str(trap))], {}, {}))
    _publish_raw(stack, body, "application/x-python-serialize", command_id,
                 "bgp.tests.apps.commands.Echo")
    event = bgp.events.wait_for(command_id)
    assert event.status is S.ERROR
    assert "must be JSON" in event.error.message
    assert not trap.exists()


def test_non_immutable_chain_argument_is_rejected_clearly(stack):
    bgp = stack.publisher()
    first, second = Echo(text="a"), Echo(text="b")
    loose = bgp.signature(second).clone()
    loose.immutable = False
    chain(bgp.signature(first), loose).apply_async()
    event = bgp.events.wait_for(second.id)
    assert event.status is S.ERROR
    assert "exactly one payload argument" in event.error.message


def test_long_running_command_shows_processing(stack):
    bgp = stack.publisher()
    command = Sleep(seconds=1.5)
    bgp.dispatch(command)
    assert bgp.events.wait_for(command.id, statuses=(S.PROCESSING,)).status is S.PROCESSING
    assert bgp.events.wait_for(command.id).status is S.PROCESSED
