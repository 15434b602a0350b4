"""A command payload is the command its events talk about: its ``id`` is the task id.

Raw messages under a command's task name, through a real ``celery worker`` on Redis and
on RabbitMQ: a payload without ``id``, or with another command's, is refused like any
invalid payload (ERROR for the task id, message rejected, handler not run) and the
worker keeps consuming. Unknown fields are ignored with a warning (a tolerant reader,
for rolling deploys); a field the payload lacks takes its default.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass

import pydantic
import pytest
from kombu import Connection, Exchange, Producer

from celery_bgp import BackgroundCommand, EventStatus
from celery_bgp.commands import decode_command, new_command_id
from celery_bgp.exceptions import InvalidCommand
from tests.apps.commands import Append, Echo

S = EventStatus
APPEND = "bgp.tests.apps.commands.Append"
SLOW_APPEND = "bgp.tests.apps.commands.SlowAppend"


def send(stack, task_name: str, payload: dict, task_id: str) -> None:
    """What another publisher (or an old one) could send: no bgp dispatch involved."""
    stack.app().send_task(task_name, args=(payload,), task_id=task_id)


def publish_raw(stack, task_name: str, payload: dict, task_id: str) -> None:
    """A hand-made Celery protocol 2 message, JSON, straight through kombu."""
    body = json.dumps([[payload], {}, {"callbacks": None, "errbacks": None, "chain": None,
                                       "chord": None}])
    with Connection(stack.env["BGP_TEST_BROKER"]) as conn:
        Producer(conn).publish(
            body.encode(), exchange=Exchange(stack.queue, type="direct"),
            routing_key=stack.queue, content_type="application/json",
            content_encoding="utf-8",
            headers={"id": task_id, "task": task_name, "lang": "py", "retries": 0,
                     "argsrepr": "", "kwargsrepr": ""},
        )


def refused(stack, bgp, task_id: str, key: str, sink) -> str:
    """Wait for the ERROR of ``task_id``; check the handler did not run; its message."""
    event = bgp.events.wait_for(task_id, timeout=30)
    assert event.status is S.ERROR, event
    assert event.error.type == "celery_bgp.exceptions.InvalidCommand"
    assert event.reason == "rejected"
    assert bgp.events.latest(task_id).status is S.ERROR
    assert sink.lrange(key, 0, -1) == []  # the handler never ran
    assert bgp.dispatch(Echo(text="still consuming")).get(timeout=20) == "still consuming"
    assert sink.lrange(key, 0, -1) == []
    return event.error.message


@pytest.mark.integration
@pytest.mark.parametrize("publish", [send, publish_raw], ids=["send_task", "kombu"])
def test_a_payload_without_id_is_refused(stack, sink, publish):
    bgp = stack.publisher()
    key = f"no-id-{uuid.uuid4().hex}"
    task_id = new_command_id()
    publish(stack, APPEND, {"key": key, "item": "should not run"}, task_id)
    message = refused(stack, bgp, task_id, key, sink)
    assert "id: missing" in message and task_id in message


@pytest.mark.integration
@pytest.mark.parametrize("publish", [send, publish_raw], ids=["send_task", "kombu"])
def test_a_payload_with_another_id_is_refused(stack, sink, publish):
    bgp = stack.publisher()
    key = f"other-id-{uuid.uuid4().hex}"
    task_id, other = new_command_id(), new_command_id()
    publish(stack, APPEND, {"id": other, "key": key, "item": "should not run"}, task_id)
    message = refused(stack, bgp, task_id, key, sink)
    assert "not the id of its task" in message and task_id in message
    assert other not in message  # the payload's values are not echoed
    assert bgp.events.all(other) == []  # nothing was recorded under the payload's id


@pytest.mark.integration
def test_unknown_fields_are_ignored_with_a_warning_and_missing_defaults_apply(stack, sink):
    bgp = stack.publisher()
    key = f"tolerant-{uuid.uuid4().hex}"
    newer = new_command_id()  # a newer publisher added a field this worker does not know
    send(stack, APPEND, {"id": newer, "key": key, "item": "newer",
                         "added_in_v2": {"x": 1}}, newer)
    assert bgp.events.wait_for(newer, timeout=30).status is S.PROCESSED
    older = new_command_id()  # an older publisher: no timestamp, no seconds (defaults)
    send(stack, SLOW_APPEND, {"id": older, "key": key}, older)
    assert bgp.events.wait_for(older, timeout=30).status is S.PROCESSED
    assert sink.lrange(key, 0, -1) == ["newer", older]
    deadline = time.monotonic() + 10
    while "added_in_v2" not in stack.worker.log():
        assert time.monotonic() < deadline, stack.worker.log()[-3000:]
        time.sleep(0.1)
    warning = next(line for line in stack.worker.log().splitlines() if "added_in_v2" in line)
    assert "WARNING" in warning and "tests.apps.commands.Append" in warning


# -- the codec on its own --------------------------------------------------------------


def test_decode_checks_the_id_only_against_a_task_id():
    command = decode_command(Append, {"id": "abc", "key": "k", "item": "i"}, task_id="abc")
    assert command.id == "abc"
    fresh = decode_command(Append, {"key": "k", "item": "i"})  # no task: a new command
    assert fresh.id and fresh.id != "abc"
    with pytest.raises(InvalidCommand, match="id: missing"):
        decode_command(Append, {"key": "k", "item": "i"}, task_id="abc")
    with pytest.raises(InvalidCommand, match="not the id of its task"):
        decode_command(Append, {"id": "abd", "key": "k", "item": "i"}, task_id="abc")
    with pytest.raises(InvalidCommand, match="not the id of its task"):
        decode_command(Append, {"id": 7, "key": "k", "item": "i"}, task_id="7")


@dataclass
class Renamed(BackgroundCommand):
    size: int = 1


class ModelCommand(pydantic.BaseModel):
    id: str
    timestamp: str = "now"
    label: str = pydantic.Field(default="", alias="displayLabel")


class OpenModel(ModelCommand):
    model_config = pydantic.ConfigDict(extra="allow")


def test_unknown_fields_are_logged_once_per_set(caplog):
    caplog.set_level(logging.WARNING, logger="celery_bgp")
    for _ in range(3):
        decode_command(Renamed, {"id": "a", "colour": "crimson"}, task_id="a")
    decode_command(Renamed, {"id": "a", "colour": "crimson", "shape": 1}, task_id="a")
    warnings = [r.getMessage() for r in caplog.records if "does not know" in r.getMessage()]
    assert len(warnings) == 2
    assert "colour" in warnings[0] and "crimson" not in warnings[0]  # names, never values
    assert "colour, shape" in warnings[1]
    caplog.clear()
    decode_command(ModelCommand, {"id": "a", "displayLabel": "x"}, task_id="a")  # an alias
    decode_command(OpenModel, {"id": "a", "anything": 1}, task_id="a")  # the model keeps it
    assert not [r for r in caplog.records if "does not know" in r.getMessage()]
