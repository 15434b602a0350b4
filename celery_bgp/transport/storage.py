"""Azure Storage calls of one connection: queues, messages and claim-check blobs.

Every call goes through :meth:`AzureClients.errors`, so a failure surfaces as a
redacted :class:`~.credentials.AzureStorageError` (or :class:`BrokerUnavailable`,
which kombu treats as a lost connection). Queues are created once per connection
and again if they vanish (Azurite restarted, someone deleted them).
"""
from __future__ import annotations

import math
import uuid
from typing import Any

from ..exceptions import PayloadTooLarge
from . import codec
from .credentials import AzureClients, AzureStorageError
from .options import TransportOptions

__all__ = ["MAX_DELAY", "MessageTooLarge", "QueueStorage"]

#: Azure's longest visibility timeout is 7 days; longer delays re-defer themselves.
MAX_DELAY = 7 * 24 * 3600 - 1


class MessageTooLarge(PayloadTooLarge):
    """A message does not fit in one queue message and no claim-check container is set."""

    def __init__(self, size: int, limit: int, queue: str, why: str = "off") -> None:
        self.size, self.limit = size, limit
        hint = ("claim-check is turned off (blob_container is empty): set the blob_container "
                "transport option to send large messages through Blob Storage"
                if why == "off" else
                "the connection has no Blob Storage endpoint for claim-check: give one "
                "(BlobEndpoint in the connection string, or blob_account_url)")
        Exception.__init__(
            self,
            f"message for Azure queue {queue!r} is {size} bytes once encoded, above Azure "
            f"Storage Queue's limit of {limit} bytes; {hint}",
        )


class QueueStorage:
    """The queue, message and blob operations the transport and the tools use."""

    def __init__(self, clients: AzureClients, options: TransportOptions) -> None:
        self.clients = clients
        self.options = options
        self._created: set[Any] = set()
        self._queue_clients: dict[str, Any] = {}

    def close(self) -> None:
        """Forget cached clients (the connection is closing)."""
        self._queue_clients.clear()

    def queue_client(self, name: str) -> Any:
        client = self._queue_clients.get(name)
        if client is None:
            client = self._queue_clients[name] = self.clients.queue_client(name)
        return client

    def ensure_queue(self, name: str, force: bool = False) -> None:
        if name in self._created and not force:
            return
        try:
            with self.clients.errors(f"creating queue {name}"):
                self.queue_client(name).create_queue()
        except AzureStorageError as exc:
            if not exc.conflict:
                raise
        self._created.add(name)

    def queue_exists(self, name: str) -> bool:
        try:
            with self.clients.errors(f"reading queue {name}"):
                self.queue_client(name).get_queue_properties()
        except AzureStorageError as exc:
            if exc.not_found:
                return False
            raise
        return True

    def queue_size(self, name: str) -> int:
        try:
            with self.clients.errors(f"reading queue {name}"):
                props = self.queue_client(name).get_queue_properties()
        except AzureStorageError as exc:
            if exc.not_found:
                return 0
            raise
        return props.approximate_message_count or 0

    def clear_queue(self, name: str) -> int:
        count = self.queue_size(name)
        try:
            with self.clients.errors(f"purging queue {name}"):
                self.queue_client(name).clear_messages()
        except AzureStorageError as exc:
            if exc.not_found:
                return 0
            raise
        return count

    def delete_queue(self, name: str) -> None:
        self._created.discard(name)
        try:
            with self.clients.errors(f"deleting queue {name}"):
                self.queue_client(name).delete_queue()
        except AzureStorageError as exc:
            if not exc.not_found:
                raise

    def receive(self, name: str, count: int) -> list[Any]:
        """One receive call: up to ``count`` (<= 32) messages, leased."""
        client = self.queue_client(name)
        try:
            with self.clients.errors(f"receiving from queue {name}"):
                pages = client.receive_messages(
                    messages_per_page=max(1, min(count, 32)),
                    visibility_timeout=self.options.visibility_timeout).by_page()
                return list(next(pages, []))
        except AzureStorageError as exc:
            if exc.not_found:
                self._created.discard(name)
                self.ensure_queue(name)
                return []
            raise

    def send_envelope(self, name: str, envelope: dict[str, Any], delay: int = 0,
                      ttl: int = -1, create: bool = True) -> Any:
        """Encode ``envelope`` (claim-check when too large), send it; the sent message."""
        text, raw = codec.encode_envelope(envelope)
        if len(text) > codec.MAX_MESSAGE_BYTES:
            container = self.options.blob_container
            if not container or not self.clients.endpoints.get("blob"):
                raise MessageTooLarge(len(text), codec.MAX_MESSAGE_BYTES, name,
                                      "off" if not container else "no_endpoint")
            blob = f"{name}/{uuid.uuid4().hex}.json"
            self.upload_blob(container, blob, raw)
            text = codec.claim_check_text(container, blob, len(raw))
        return self.send_text(name, text, delay=delay, ttl=ttl, create=create)

    def send_text(self, name: str, text: str, delay: int = 0, ttl: int = -1,
                  create: bool = True) -> Any:
        """Send raw queue text; a missing queue is created (``create``) and retried once."""
        if ttl != -1 and delay:
            ttl = ttl + delay  # the TTL counts from when the message becomes visible
        if create:
            self.ensure_queue(name)
        for attempt in (1, 2):
            try:
                with self.clients.errors(f"sending to queue {name}"):
                    return self.queue_client(name).send_message(
                        text, visibility_timeout=delay or None, time_to_live=ttl)
            except AzureStorageError as exc:
                if not (exc.not_found and create and attempt == 1):
                    raise
                self.ensure_queue(name, force=True)
        return None

    def redefer(self, name: str, message: Any, remaining: float) -> Any:
        """Put a message received before its ETA back to sleep (as a fresh message)."""
        delay = min(MAX_DELAY, math.ceil(remaining))
        sent = self.send_text(name, message.content, delay=delay, ttl=self.options.message_ttl)
        with self.clients.errors(f"deleting a re-deferred message from {name}"):
            self.queue_client(name).delete_message(message.id, message.pop_receipt)
        return sent

    def upload_blob(self, container: str, blob: str, data: bytes) -> None:
        service = self.clients.blob_service
        with self.clients.errors(f"uploading claim-check blob to {container}"):
            client = service.get_container_client(container)
            if ("container", container) not in self._created:
                try:
                    client.create_container()
                except Exception as exc:
                    if getattr(exc, "status_code", None) != 409:
                        raise
                self._created.add(("container", container))  # type: ignore[arg-type]
            client.upload_blob(blob, data, overwrite=True)

    def download_blob(self, container: str, blob: str) -> bytes:
        with self.clients.errors(f"downloading claim-check blob from {container}"):
            return self.clients.blob_service.get_blob_client(
                container, blob).download_blob().readall()
