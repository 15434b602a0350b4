"""Event repository on Azure Table Storage: one entity per event, never overwritten.

``azuretable://?table=<name>&expiry=600``; the connection string comes from the
``connection_string`` option or ``AZURE_STORAGE_CONNECTION_STRING``. PartitionKey is
the command id, RowKey a fresh UUID per event, so concurrent writers only ever
insert and never lose an event; a batch is one table transaction per command (up to
100 events). Azure Tables have no TTL, so expiry is sliding and enforced on read:
a command whose newest event was written more than ``expiry`` seconds ago reads as
empty and its entities are deleted then; :meth:`AzureTableEventRepository.purge_expired`
sweeps the rest (run it from beat, daily for instance).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import time
import uuid
from collections.abc import Sequence
from typing import Any

from ..exceptions import ImproperlyConfigured
from ..extras import require
from .model import CommandEvent, newest_first
from .repository import DEFAULT_EXPIRY, EventRepository, group_by_command, parse_expiry, url_options

__all__ = ["AzureTableEventRepository"]

ENV_CONNECTION_STRING = "AZURE_STORAGE_CONNECTION_STRING"
_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")
#: Characters Azure Table keys may not contain, escaped as %XX (and % itself).
_KEY_UNSAFE = re.compile(r"[%/\\#?\x00-\x1f\x7f-\x9f]")
#: A string property holds at most 32K UTF-16 code units; events are split below that.
_CHUNK = 30_000
_BATCH = 100


def _escape_key(value: str) -> str:
    return _KEY_UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group(0).encode()), value)


class AzureTableEventRepository(EventRepository):
    """Events as entities of one Azure table, partitioned by command id."""

    def __init__(self, table_client: Any, expiry: float | None = DEFAULT_EXPIRY) -> None:
        self.table = table_client
        self.expiry = expiry
        self._created = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> AzureTableEventRepository:
        """``azuretable://?table=bgpevents&expiry=600`` (``expiry=none`` keeps events)."""
        tables = require("azure.data.tables", "azure", "The Azure Table event repository")
        opts = url_options(url, {"table": "bgpevents",
                                 "expiry": options.get("expiry", DEFAULT_EXPIRY)})
        name = str(opts["table"])
        if not _TABLE_NAME.match(name):
            raise ImproperlyConfigured(
                f"Azure table name {name!r} must be 3-63 letters and digits, starting with a "
                "letter")
        conn = options.get("connection_string") or os.environ.get(ENV_CONNECTION_STRING)
        if not conn:
            raise ImproperlyConfigured(
                "azuretable:// needs a connection string: the connection_string option or "
                f"the {ENV_CONNECTION_STRING} environment variable")
        from ..transport.credentials import CLIENT_KWARGS, parse_connection_string

        parts = parse_connection_string(conn)
        endpoint = parts.get("tableendpoint")
        if not endpoint or "accountkey" not in parts:
            client = tables.TableClient.from_connection_string(conn, table_name=name,
                                                               **CLIENT_KWARGS)
        else:
            from azure.core.credentials import AzureNamedKeyCredential

            client = tables.TableClient(
                endpoint, name,
                credential=AzureNamedKeyCredential(parts["accountname"], parts["accountkey"]),
                **CLIENT_KWARGS)
        return cls(client, expiry=parse_expiry(opts["expiry"]))

    def _ensure_table(self) -> None:
        if not self._created:
            from azure.core.exceptions import ResourceExistsError

            with contextlib.suppress(ResourceExistsError):
                self.table.create_table()
            self._created = True

    def _entity(self, event: CommandEvent, written: float) -> dict[str, Any]:
        text = event.to_json()
        entity: dict[str, Any] = {
            "PartitionKey": _escape_key(event.command_id),
            "RowKey": uuid.uuid4().hex,
            "Status": event.status.value,
            "EventTimestamp": event.timestamp,
            "WrittenAt": written,
            "Parts": max(1, -(-len(text) // _CHUNK)),
        }
        for i in range(entity["Parts"]):
            entity[f"Event{i}"] = text[i * _CHUNK:(i + 1) * _CHUNK]
        return entity

    def add_many(self, events: Sequence[CommandEvent]) -> None:
        if not events:
            return
        self._ensure_table()
        written = time.time()
        for group in group_by_command(events).values():
            entities = [self._entity(event, written) for event in group]
            for start in range(0, len(entities), _BATCH):
                chunk = entities[start:start + _BATCH]
                if len(chunk) == 1:
                    self.table.create_entity(chunk[0])
                else:
                    self.table.submit_transaction([("create", e) for e in chunk])

    def _rows(self, command_id: str) -> list[dict[str, Any]]:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return list(self.table.query_entities(
                "PartitionKey eq @pk", parameters={"pk": _escape_key(command_id)}))
        except ResourceNotFoundError:
            return []

    def all(self, command_id: str) -> list[CommandEvent]:
        rows = self._rows(command_id)
        if not rows:
            return []
        if self.expiry is not None:
            newest = max(float(row.get("WrittenAt") or 0) for row in rows)
            if newest + self.expiry <= time.time():
                self._delete(rows)
                return []
        events = []
        for row in rows:
            text = "".join(row.get(f"Event{i}", "") for i in range(int(row.get("Parts", 1))))
            events.append(CommandEvent.from_dict(json.loads(text)))
        return newest_first(events)

    def _delete(self, rows: list[dict[str, Any]]) -> None:
        from azure.core.exceptions import AzureError

        by_partition: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_partition.setdefault(row["PartitionKey"], []).append(row)
        for group in by_partition.values():
            for start in range(0, len(group), _BATCH):
                ops = [("delete", {"PartitionKey": r["PartitionKey"], "RowKey": r["RowKey"]})
                       for r in group[start:start + _BATCH]]
                # AzureError: a concurrent reader deleted them first
                with contextlib.suppress(AzureError):
                    self.table.submit_transaction(ops)

    def purge_expired(self, limit: int = 10_000) -> int:
        """Delete the events of commands idle for longer than ``expiry``; return how many."""
        if self.expiry is None:
            return 0
        cutoff = time.time() - self.expiry
        rows: dict[str, list[dict[str, Any]]] = {}
        for row in self.table.query_entities(
                "WrittenAt lt @cutoff", parameters={"cutoff": cutoff},
                select=["PartitionKey", "RowKey", "WrittenAt"]):
            rows.setdefault(row["PartitionKey"], []).append(row)
            if sum(len(v) for v in rows.values()) >= limit:
                break
        deleted = 0
        for partition, stale in rows.items():
            fresh = list(self.table.query_entities(
                "PartitionKey eq @pk and WrittenAt ge @cutoff",
                parameters={"pk": partition, "cutoff": cutoff}, select=["RowKey"]))
            if not fresh:  # sliding expiry: a recent event keeps the whole command
                self._delete(stale)
                deleted += len(stale)
        return deleted

    def close(self) -> None:
        self.table.close()
