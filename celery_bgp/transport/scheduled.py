"""Which delayed (``eta``/``countdown``) messages wait in Azure, for ``celery bgp scheduled``.

Redis workers hold delayed tasks in memory, so ``celery inspect scheduled`` lists them.
``azurequeue://`` leaves the delay to Azure (the message is invisible until due), and
Azure cannot list invisible messages: peek shows visible ones only. So the publisher
records each delayed message in an Azure table of the same account (option
``scheduled_table``, default ``bgpscheduled``; ``None`` turns it off) and the worker
deletes the record when it receives the message. PartitionKey = physical queue,
RowKey = Azure message id; properties: Celery queue, task name and id, ETA, due time,
expiry, prefix. A record whose message expired is dropped when listed. Costs one table
write per delayed publish and one delete per delayed receive, nothing for other messages.
"""
from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timezone
from typing import Any

from .credentials import AzureClients, AzureStorageError

__all__ = ["DEFAULT_TABLE", "ScheduledIndex", "ScheduledMessage"]

logger = logging.getLogger("celery_bgp.transport.azurequeue")

DEFAULT_TABLE = "bgpscheduled"


@dataclasses.dataclass(frozen=True)
class ScheduledMessage:
    """One delayed message as recorded at publish."""

    queue: str
    physical_queue: str
    message_id: str
    task: str | None
    task_id: str | None
    eta: str | None
    due: datetime | None
    expires: datetime | None


def _aware(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


class ScheduledIndex:
    """The table of delayed messages of one connection (scoped by ``queue_name_prefix``)."""

    def __init__(self, clients: AzureClients, prefix: str, table: str | None) -> None:
        self.clients = clients
        self.prefix = prefix
        self.table_name = table
        self._table: Any = None

    @property
    def enabled(self) -> bool:
        return bool(self.table_name)

    @property
    def table(self) -> Any:
        if self._table is None:
            with self.clients.errors("creating the scheduled-messages table"):
                self._table = self.clients.table_service.create_table_if_not_exists(
                    self.table_name)
        return self._table

    def record(self, queue: str, physical: str, sent: Any, envelope: dict[str, Any]) -> None:
        """Note a delayed message just sent (``sent``: the SDK's QueueMessage)."""
        if not self.enabled or sent is None:
            return
        headers = envelope.get("headers") or {}
        entity = {
            "PartitionKey": physical, "RowKey": sent.id, "prefix": self.prefix,
            "queue": queue, "task": str(headers.get("task") or ""),
            "task_id": str(headers.get("id") or ""), "eta": str(headers.get("eta") or ""),
        }
        for key, value in (("due", sent.next_visible_on), ("expires", sent.expires_on)):
            if isinstance(value, datetime):
                entity[key] = _aware(value)
        try:
            with self.clients.errors(f"recording a delayed message of {queue!r}"):
                self.table.upsert_entity(entity)
        except AzureStorageError as exc:  # the message is sent: only the listing misses it
            logger.warning("azurequeue: could not record delayed message %s: %s", sent.id, exc)

    def forget(self, physical: str, message_id: str) -> None:
        """Drop the record of a delayed message (it was received, or is gone)."""
        if not self.enabled:
            return
        try:
            with self.clients.errors("forgetting a delayed message"):
                self.table.delete_entity(physical, message_id)
        except AzureStorageError as exc:
            if not exc.not_found:
                logger.warning("azurequeue: could not drop the record of delayed message "
                               "%s: %s", message_id, exc)

    def list(self, queues: list[str] | None = None) -> list[ScheduledMessage]:
        """Delayed messages of ``queues`` (all of this prefix when None), soonest first."""
        if not self.enabled:
            return []
        now = datetime.now(timezone.utc)
        found: list[ScheduledMessage] = []
        with self.clients.errors("listing delayed messages"):
            rows = list(self.table.query_entities("prefix eq @p",
                                                  parameters={"p": self.prefix}))
        for row in rows:
            if queues is not None and row.get("queue") not in queues:
                continue
            expires = _aware(row.get("expires"))
            if expires is not None and expires <= now:
                self.forget(row["PartitionKey"], row["RowKey"])  # Azure dropped it
                continue
            found.append(ScheduledMessage(
                queue=row.get("queue") or "", physical_queue=row["PartitionKey"],
                message_id=row["RowKey"], task=row.get("task") or None,
                task_id=row.get("task_id") or None, eta=row.get("eta") or None,
                due=_aware(row.get("due")), expires=expires))
        far = datetime.max.replace(tzinfo=timezone.utc)
        return sorted(found, key=lambda m: (m.due or far, m.queue))
