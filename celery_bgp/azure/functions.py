"""Run celery-bgp commands inside Azure Functions, from a queue trigger on an azurequeue queue.

The seed's ``AzureFunctionsQueueStorageHandler``: a queue-triggered function hands
the ``azure.functions.QueueMessage`` it received to :func:`process_queue_message`
(or to an :class:`AzureFunctionsQueueStorageHandler`), which decodes the celery-bgp
message (base64 envelope, claim-check blob too), finds the command type through the
instance's handler registry only (never an import path from the message), and runs
the handler through :meth:`BackgroundProcessing.process`, with the same events and
processor decorators as a Celery worker. An exception fails the invocation, so the
Functions runtime retries the message and finally moves it to ``<queue>-poison``::

    import azure.functions as func
    from celery_bgp.azure.functions import AzureFunctionsQueueStorageHandler
    from proj.bgp import bgp

    handle = AzureFunctionsQueueStorageHandler(bgp)
    app = func.FunctionApp()

    @app.queue_trigger(arg_name="msg", queue_name="images", connection="AzureWebJobsStorage")
    def images(msg: func.QueueMessage) -> None:
        handle(msg)
"""
from __future__ import annotations

import base64
import binascii
import json
import os
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..commands import decode_command, utcnow
from ..events import CommandEvent, ErrorInfo, EventStatus
from ..exceptions import InvalidCommand
from ..extras import require
from ..transport import codec

if TYPE_CHECKING:
    from ..processing import BackgroundProcessing

__all__ = ["AzureFunctionsQueueStorageHandler", "decode_queue_message", "process_queue_message"]

_CONNECTION_ENV = ("AZURE_STORAGE_CONNECTION_STRING", "AzureWebJobsStorage")


class AzureFunctionsQueueStorageHandler:
    """Callable that processes one Functions queue message with ``bgp``.

    ``connection_string`` is needed only for claim-check messages (default: the
    ``AZURE_STORAGE_CONNECTION_STRING`` or ``AzureWebJobsStorage`` setting).
    """

    def __init__(self, bgp: BackgroundProcessing, *, connection_string: str | None = None,
                 delete_claim_check_blob: bool = True) -> None:
        self.bgp = bgp
        self.connection_string = connection_string
        self.delete_claim_check_blob = delete_claim_check_blob
        self._blob_service: Any = None

    def __call__(self, message: Any) -> Any:
        return self.handle(message)

    def handle(self, message: Any) -> Any:
        """Decode and process ``message``; return the handler's result."""
        envelope, ref = self._envelope(message)
        headers = envelope.get("headers") or {}
        command_id = headers.get("id")
        try:
            command = self._command(envelope, headers)
        except InvalidCommand as exc:
            self._record_error(command_id, headers, exc)
            raise
        if _expired(headers):
            self.bgp.record(CommandEvent(command.id, EventStatus.CANCELLED, utcnow(),
                                         command_name=self.bgp.command_name_for_task(
                                             headers.get("task")), reason="expired"))
            return None
        result = self.bgp.process(command)
        if ref is not None and self.delete_claim_check_blob:
            self._blobs().get_blob_client(ref["container"], ref["blob"]).delete_blob()
        return result

    def _envelope(self, message: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
        body = message.get_body() if hasattr(message, "get_body") else message
        try:
            data = decode_queue_message(body)
        except codec.UndecodableMessage as exc:
            raise InvalidCommand(f"not a celery-bgp queue message: {exc}") from None
        ref = codec.claim_check_ref(data)
        if ref is None:
            return data, None
        blob = self._blobs().get_blob_client(ref["container"], ref["blob"])
        try:
            return codec.parse_envelope(blob.download_blob().readall()), ref
        except codec.UndecodableMessage as exc:
            raise InvalidCommand(f"claim-check payload is not a celery-bgp message: {exc}") \
                from None

    def _command(self, envelope: dict[str, Any], headers: dict[str, Any]) -> Any:
        if envelope.get("content-type") != "application/json":
            raise InvalidCommand(
                "command messages must be JSON (application/json), got content type "
                f"{envelope.get('content-type')!r}; the message was not decoded")
        task = headers.get("task")
        name = self.bgp.command_name_for_task(task)
        if name is None:
            raise InvalidCommand(f"task {task!r} is not a command of this BackgroundProcessing")
        self.bgp.discover()
        try:
            command_type = self.bgp.registry.type_named(name)
        except LookupError:
            raise InvalidCommand(f"unknown command type {name!r}: no handler registered "
                                 "in this function app") from None
        body = envelope.get("body")
        if (envelope.get("properties") or {}).get("body_encoding") == "base64":
            try:
                body = base64.b64decode(body or "", validate=True)
            except (binascii.Error, ValueError):
                raise InvalidCommand("command message body is not base64") from None
        try:
            args, _kwargs, _embed = json.loads(body)
            payload = args[0]
        except (ValueError, TypeError, IndexError, KeyError, RecursionError):
            raise InvalidCommand(
                "command message body is not a Celery [args, kwargs, embed] triple") from None
        task_id = headers.get("id")
        return decode_command(command_type, payload,
                              task_id=task_id if isinstance(task_id, str) else None)

    def _record_error(self, command_id: Any, headers: dict[str, Any],
                      exc: InvalidCommand) -> None:
        if not isinstance(command_id, str):
            return
        self.bgp.record(CommandEvent(
            command_id, EventStatus.ERROR, utcnow(),
            command_name=self.bgp.command_name_for_task(headers.get("task")),
            error=ErrorInfo(type=f"{type(exc).__module__}.{type(exc).__qualname__}",
                            message=str(exc)),
            reason="rejected",
        ))

    def _blobs(self) -> Any:
        if self._blob_service is None:
            blobs = require("azure.storage.blob", "azure", "claim-check messages in Functions")
            conn = self.connection_string or next(
                (os.environ[v] for v in _CONNECTION_ENV if os.environ.get(v)), None)
            if not conn:
                raise InvalidCommand(
                    "a claim-check message needs a storage connection string: pass "
                    "connection_string or set AZURE_STORAGE_CONNECTION_STRING")
            from ..transport.credentials import parse_connection_string

            parts = parse_connection_string(conn)
            if "accountkey" in parts and parts.get("blobendpoint"):
                from azure.core.credentials import AzureNamedKeyCredential

                self._blob_service = blobs.BlobServiceClient(
                    parts["blobendpoint"],
                    credential=AzureNamedKeyCredential(parts["accountname"], parts["accountkey"]))
            else:
                self._blob_service = blobs.BlobServiceClient.from_connection_string(conn)
        return self._blob_service


def decode_queue_message(body: bytes | str) -> dict[str, Any]:
    """The message object in a Functions queue message body.

    The runtime base64-decodes queue text by default, so ``body`` is JSON; with
    ``messageEncoding: none`` it is still the base64 text, which is accepted too.
    """
    if isinstance(body, str):
        body = body.encode("utf-8")
    if body.lstrip()[:1] == b"{":
        return codec.parse_envelope(body)
    return codec.decode_text(body)


def process_queue_message(bgp: BackgroundProcessing, message: Any, **options: Any) -> Any:
    """Process one ``azure.functions.QueueMessage`` with ``bgp`` (see the module docs)."""
    return AzureFunctionsQueueStorageHandler(bgp, **options).handle(message)


def _expired(headers: dict[str, Any]) -> bool:
    expires = headers.get("expires")
    if not isinstance(expires, str):
        return False
    try:
        when = datetime.fromisoformat(expires)
    except ValueError:
        return False
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when <= datetime.now(timezone.utc)
