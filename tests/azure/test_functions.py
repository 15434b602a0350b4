"""The Azure Functions entry point, fed exactly as the Functions runtime feeds it.

Messages are really published to Azurite by ``bgp.dispatch``; each test receives the
raw queue message and builds ``azure.functions.QueueMessage`` the way the runtime
does with its default ``messageEncoding: base64`` (the body is the decoded text).
"""
from __future__ import annotations

import base64
import uuid

import azure.functions as func
import pytest
from azure.functions.meta import Datum
from azure.functions.queue import QueueMessageInConverter
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient
from celery import Celery

from celery_bgp import BackgroundProcessing, EventStatus, Priority
from celery_bgp.azure.functions import AzureFunctionsQueueStorageHandler, process_queue_message
from celery_bgp.events.memory import MemoryEventRepository
from celery_bgp.exceptions import InvalidCommand
from celery_bgp.transport import names
from tests.apps import commands
from tests.apps.commands import Boom, Echo, Fail

pytestmark = pytest.mark.integration

S = EventStatus


@pytest.fixture
def function_app(azurite, prefix):
    """(bgp, queue): one BackgroundProcessing both dispatching and processing (as in Functions)."""
    app = Celery(f"fn-{uuid.uuid4().hex[:6]}", set_as_current=False)
    queue = f"fn{uuid.uuid4().hex[:6]}"
    app.conf.update(broker_url="azurequeue://", task_default_queue=queue,
                    broker_transport_options={"queue_name_prefix": prefix,
                                              "blob_container": "fn-claims"})
    bgp = BackgroundProcessing(app, name=f"fn-{uuid.uuid4().hex[:6]}",
                               event_repository=MemoryEventRepository(), event_write="sync")
    bgp.register_handlers(commands)
    return bgp, queue


def receive(azurite, physical: str) -> func.QueueMessage:
    """Receive one message and convert it with the worker's own queue converter.

    The Functions host decodes base64 queue text by default and hands the bytes plus
    trigger metadata to ``QueueMessageInConverter.decode``, as done here.
    """
    client = QueueServiceClient.from_connection_string(
        azurite.connection_string).get_queue_client(physical)
    raw = client.receive_message(visibility_timeout=30)
    assert raw is not None, f"no message in {physical}"
    metadata = {
        "Id": Datum(raw.id, "string"),
        "DequeueCount": Datum(raw.dequeue_count, "int"),
        "PopReceipt": Datum(raw.pop_receipt, "string"),
        "InsertionTime": Datum(raw.inserted_on.isoformat(), "string"),
        "ExpirationTime": Datum(raw.expires_on.isoformat(), "string"),
        "NextVisibleTime": Datum(raw.next_visible_on.isoformat(), "string"),
    }
    message = QueueMessageInConverter.decode(
        Datum(base64.b64decode(raw.content), "bytes"), trigger_metadata=metadata)
    assert message.dequeue_count == 1 and message.id == raw.id
    return message


def base(bgp, queue):
    prefix = bgp.app.conf.broker_transport_options["queue_name_prefix"]
    return names.azure_queue_name(queue, prefix)


def test_function_runs_the_handler_with_events_and_decorators(function_app, azurite):
    bgp, queue = function_app
    seen = []
    bgp.processor_decorator(lambda ctx, call_next: seen.append(ctx.command.id) or call_next(ctx))
    command = Echo(text="serverless")
    bgp.dispatch(command)
    message = receive(azurite, base(bgp, queue))
    handle = AzureFunctionsQueueStorageHandler(bgp)
    assert handle(message) == "serverless"
    assert seen == [command.id]
    assert [e.status for e in bgp.events.all(command.id)] == [
        S.PROCESSED, S.PROCESSING, S.DISPATCHED]


def test_priority_queue_messages_work_too(function_app, azurite):
    bgp, queue = function_app
    command = Echo(text="urgent")
    bgp.dispatch(command, priority=Priority.CRITICAL)
    message = receive(azurite, names.level_queue(base(bgp, queue), 0))
    assert process_queue_message(bgp, message) == "urgent"


def test_claim_check_message_is_fetched_and_its_blob_deleted(function_app, azurite):
    bgp, queue = function_app
    text = "w" * 100_000
    bgp.dispatch(Echo(text=text))
    message = receive(azurite, base(bgp, queue))
    assert b"bgp_claim_check" in message.get_body()
    assert process_queue_message(bgp, message) == text
    container = BlobServiceClient.from_connection_string(
        azurite.connection_string).get_container_client("fn-claims")
    assert list(container.list_blobs()) == []


def test_failing_handler_records_error_and_fails_the_invocation(function_app, azurite):
    bgp, queue = function_app
    command = Fail(message="in the cloud")
    bgp.dispatch(command)
    message = receive(azurite, base(bgp, queue))
    with pytest.raises(Boom):
        process_queue_message(bgp, message)
    event = bgp.events.latest(command.id)
    assert event.status is S.ERROR and event.error.message == "in the cloud"


def test_unknown_command_is_refused_without_importing_anything(function_app, azurite):
    bgp, queue = function_app
    command_id = uuid.uuid4().hex
    bgp.app.send_task("bgp.os.system", args=({"id": command_id},), task_id=command_id,
                      headers={"bgp": bgp.name})
    message = receive(azurite, base(bgp, queue))
    with pytest.raises(InvalidCommand, match=r"unknown command type 'os\.system'"):
        process_queue_message(bgp, message)
    assert bgp.events.latest(command_id).status is S.ERROR


def test_non_json_content_is_refused(function_app, azurite):
    bgp, queue = function_app
    command_id = uuid.uuid4().hex
    bgp.app.send_task("bgp.tests.apps.commands.Echo", args=({"id": command_id},),
                      task_id=command_id, serializer="pickle")
    message = receive(azurite, base(bgp, queue))
    with pytest.raises(InvalidCommand, match="must be JSON"):
        process_queue_message(bgp, message)


def test_base64_text_body_is_accepted_too(function_app, azurite):
    """With ``messageEncoding: none`` the runtime hands over the base64 text itself."""
    bgp, queue = function_app
    bgp.dispatch(Echo(text="raw"))
    client = QueueServiceClient.from_connection_string(
        azurite.connection_string).get_queue_client(base(bgp, queue))
    raw = client.receive_message()
    message = func.QueueMessage(id=raw.id, body=raw.content.encode("ascii"))
    assert process_queue_message(bgp, message) == "raw"


def test_deeply_nested_body_is_refused_clearly(function_app, azurite):
    """A message whose Celery body nests 100,000 lists: InvalidCommand, not RecursionError."""
    import json

    bgp, queue = function_app
    bgp.dispatch(Echo(text="deep"))
    message = receive(azurite, base(bgp, queue))
    envelope = json.loads(message.get_body())
    envelope["body"] = base64.b64encode(b"[" * 100_000).decode()
    envelope.setdefault("properties", {})["body_encoding"] = "base64"
    deep = func.QueueMessage(id=message.id, body=json.dumps(envelope).encode())
    with pytest.raises(InvalidCommand, match="not a Celery"):
        process_queue_message(bgp, deep)
