"""Dead-lettered messages: move to ``<queue>-poison`` with the reason; list, requeue, purge.

A message goes to the poison queue of its logical queue when it was received more
than ``max_dequeue_count`` times (it keeps failing or killing workers) or when its
text cannot be decoded. The poison message is JSON (not base64, so it reads plainly
in Storage Explorer): ``{"bgp_poison": {reason, queue, source, message_id,
dequeue_count, failed_at}, "text": <original text>}``; when that would not fit in
one message the original text goes to the claim-check container (if configured) or
travels unchanged, with the reason only logged. :class:`PoisonQueues` is the API the
CLI and operators use.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from . import codec, names
from .credentials import AzureStorageError

__all__ = ["PoisonMessage", "PoisonQueues", "move_to_poison"]

logger = logging.getLogger("celery_bgp.transport.azurequeue")

POISON_KEY = "bgp_poison"


@dataclasses.dataclass(frozen=True)
class PoisonMessage:
    """One dead-lettered message as the tools show it."""

    id: str
    queue: str | None
    source: str | None
    reason: str | None
    dequeue_count: int | None
    failed_at: str | None
    text: str | None
    task: str | None = None
    task_id: str | None = None


def move_to_poison(storage: Any, queue: str, source: str, message: Any, reason: str) -> None:
    """Copy ``message`` (a received QueueMessage) to the poison queue, then delete it.

    ``storage`` is the connection's :class:`~.storage.QueueStorage`.
    """
    transport = storage
    base = names.azure_queue_name(queue, transport.options.queue_name_prefix)
    target = names.poison_queue(base)
    meta = {
        "reason": reason,
        "queue": queue,
        "source": source,
        "message_id": message.id,
        "dequeue_count": message.dequeue_count,
        "failed_at": datetime.now(timezone.utc).isoformat(),
    }
    text = message.content if isinstance(message.content, str) else str(message.content)
    wrapped = json.dumps({POISON_KEY: meta, "text": text})
    if len(wrapped.encode("utf-8")) > codec.MAX_MESSAGE_BYTES:
        container = transport.options.blob_container
        if container and transport.clients.endpoints.get("blob"):
            blob = f"poison/{target}/{uuid.uuid4().hex}.txt"
            transport.upload_blob(container, blob, text.encode("utf-8"))
            wrapped = json.dumps({POISON_KEY: meta, "blob": {"container": container,
                                                            "blob": blob}})
        else:
            wrapped = text
            logger.error("azurequeue: message %s is too large to carry its poison reason; "
                         "moved unchanged. Reason: %s", message.id, reason)
    transport.send_text(target, wrapped, ttl=-1)
    client = transport.queue_client(source)
    with transport.clients.errors(f"deleting a poisoned message from {source}"):
        client.delete_message(message.id, message.pop_receipt)
    logger.error("azurequeue: moved message %s from %s to %s: %s",
                 message.id, source, target, reason)


class PoisonQueues:
    """List, requeue and purge the poison queues of an ``azurequeue://`` connection.

    ``connection`` is a :class:`kombu.Connection` (e.g. ``app.connection_for_write()``)
    whose transport is ``azurequeue``; queue names are Celery queue names.
    """

    def __init__(self, connection: Any) -> None:
        transport = connection.transport
        if getattr(transport, "driver_type", None) != "azurequeue":
            raise TypeError("PoisonQueues needs an azurequeue:// connection")
        connection.ensure_connection(max_retries=3)
        self.transport = transport.storage

    def name(self, queue: str) -> str:
        """The Azure name of ``queue``'s poison queue."""
        base = names.azure_queue_name(queue, self.transport.options.queue_name_prefix)
        return names.poison_queue(base)

    def count(self, queue: str) -> int:
        """Approximate number of poison messages of ``queue``."""
        client = self.transport.queue_client(self.name(queue))
        try:
            with self.transport.clients.errors("counting poison messages"):
                return client.get_queue_properties().approximate_message_count or 0
        except AzureStorageError as exc:
            if exc.not_found:
                return 0
            raise

    def list(self, queue: str, limit: int = 32) -> list[PoisonMessage]:
        """Peek at up to ``limit`` (at most 32, Azure's peek limit) poison messages."""
        client = self.transport.queue_client(self.name(queue))
        try:
            with self.transport.clients.errors("listing poison messages"):
                peeked = list(client.peek_messages(max_messages=max(1, min(limit, 32))))
        except AzureStorageError as exc:
            if exc.not_found:
                return []
            raise
        return [self._describe(m) for m in peeked]

    def requeue(self, queue: str, message_ids: list[str] | None = None) -> int:
        """Send poison messages (all, or those ids) back to their source queue; count."""
        wanted = set(message_ids) if message_ids is not None else None
        moved = 0
        for message, text, source in self._drain(queue):
            if wanted is not None and message.id not in wanted:
                self._release(queue, message)
                continue
            self.transport.send_text(source, text, ttl=self.transport.options.message_ttl)
            self._delete(queue, message)
            moved += 1
        return moved

    def purge(self, queue: str, message_ids: list[str] | None = None) -> int:
        """Delete poison messages (all, or those ids) for good; return how many."""
        wanted = set(message_ids) if message_ids is not None else None
        deleted = 0
        for message, _text, _source in self._drain(queue):
            if wanted is None or message.id in wanted:
                self._delete(queue, message)
                deleted += 1
            else:
                self._release(queue, message)
        return deleted

    # -- internals ----------------------------------------------------------------------

    def _delete(self, queue: str, message: Any) -> None:
        client = self.transport.queue_client(self.name(queue))
        with self.transport.clients.errors("deleting a poison message"):
            client.delete_message(message.id, message.pop_receipt)

    def _release(self, queue: str, message: Any) -> None:
        """Make a message that was looked at but not chosen visible again at once."""
        client = self.transport.queue_client(self.name(queue))
        with self.transport.clients.errors("releasing a poison message"):
            client.update_message(message.id, message.pop_receipt, visibility_timeout=0)

    def _drain(self, queue: str):
        """Receive every poison message once (hidden for a minute while handled).

        Callers release what they do not take; a message received a second time in
        the same drain is released here, so nothing stays hidden after a partial pass.
        """
        client = self.transport.queue_client(self.name(queue))
        base = names.azure_queue_name(queue, self.transport.options.queue_name_prefix)
        seen: set[str] = set()
        deadline = time.monotonic() + 50
        while time.monotonic() < deadline:
            try:
                with self.transport.clients.errors("receiving poison messages"):
                    page = next(client.receive_messages(
                        messages_per_page=32, visibility_timeout=60).by_page())
                    batch = list(page)
            except AzureStorageError as exc:
                if exc.not_found:
                    return
                raise
            except StopIteration:
                return
            fresh = [m for m in batch if m.id not in seen]
            for again in batch:
                if again.id in seen:  # released earlier and received again: let it be
                    self._release(queue, again)
            if not fresh:
                return
            for message in fresh:
                seen.add(message.id)
                text, source = self._original(message, base)
                yield message, text, source

    def _original(self, message: Any, base: str) -> tuple[str, str]:
        data = _parse(message.content)
        if data is None:
            return message.content, base
        meta = data[POISON_KEY]
        text = data.get("text")
        if text is None and isinstance(data.get("blob"), dict):
            ref = data["blob"]
            text = self.transport.download_blob(ref["container"], ref["blob"]).decode("utf-8")
        return text or "", meta.get("source") or base

    def _describe(self, message: Any) -> PoisonMessage:
        data = _parse(message.content)
        meta = data[POISON_KEY] if data else {}
        text = data.get("text") if data else message.content
        task = task_id = None
        if text:
            try:
                envelope = codec.decode_text(text)
                headers = envelope.get("headers") or {}
                task, task_id = headers.get("task"), headers.get("id")
            except codec.UndecodableMessage:
                pass
        return PoisonMessage(
            id=message.id, queue=meta.get("queue"), source=meta.get("source"),
            reason=meta.get("reason"), dequeue_count=meta.get("dequeue_count"),
            failed_at=meta.get("failed_at"), text=text, task=task, task_id=task_id,
        )


def _parse(content: Any) -> dict[str, Any] | None:
    if not isinstance(content, str) or not content.startswith("{"):
        return None
    try:
        data = json.loads(content)
    except (ValueError, RecursionError):
        return None
    if isinstance(data, dict) and isinstance(data.get(POISON_KEY), dict):
        return data
    return None
