"""Exchange bindings shared by every process through an Azure Table.

kombu's virtual transports keep bindings in memory, so a fanout (``celery inspect``,
``celery control``) or a reply to another process's queue finds no queue. Here every
``queue_bind`` is also written to the table ``bgpbindings`` (option
``binding_table``): PartitionKey = hash of prefix and exchange, RowKey = hash of queue
and routing key, with the readable names as properties. Lookups read the table with a
short cache, refreshed on a miss. A binding whose queue has gone is removed by the
first publisher that finds the queue missing.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from typing import Any

from .credentials import AzureClients, AzureStorageError

__all__ = ["BindingRegistry", "SharedBindingsMixin"]

logger = logging.getLogger("celery_bgp.transport.azurequeue")

DEFAULT_TABLE = "bgpbindings"


def _key(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:40]


class BindingRegistry:
    """Remote binding table of one connection (scoped by ``queue_name_prefix``)."""

    def __init__(self, clients: AzureClients, prefix: str = "", table: str = DEFAULT_TABLE,
                 cache_seconds: float = 2.0) -> None:
        self.clients = clients
        self.prefix = prefix
        self.table_name = table
        self.cache_seconds = cache_seconds
        self._table: Any = None
        self._cache: dict[str, tuple[float, list[tuple[str, str]]]] = {}
        self._written: set[tuple[str, str, str]] = set()
        self._lock = threading.Lock()

    @property
    def table(self) -> Any:
        if self._table is None:
            with self.clients.errors("creating the binding table"):
                self._table = self.clients.table_service.create_table_if_not_exists(
                    self.table_name)
        return self._table

    def _partition(self, exchange: str) -> str:
        return _key(self.prefix, exchange)

    def bind(self, exchange: str, routing_key: str, queue: str, exchange_type: str) -> None:
        """Record that ``queue`` receives ``exchange`` messages matching ``routing_key``."""
        marker = (exchange, routing_key, queue)
        if marker in self._written:
            return
        entity = {
            "PartitionKey": self._partition(exchange),
            "RowKey": _key(queue, routing_key),
            "exchange": exchange,
            "exchange_type": exchange_type,
            "routing_key": routing_key,
            "queue": queue,
            "bound_at": time.time(),
        }
        with self.clients.errors(f"recording a binding of exchange {exchange!r}"):
            self.table.upsert_entity(entity)
        with self._lock:
            self._written.add(marker)
            self._cache.pop(exchange, None)

    def unbind_queue(self, queue: str, exchanges: list[str] | None = None) -> None:
        """Remove every binding of ``queue`` (in ``exchanges``, or everywhere)."""
        flt = "queue eq @q"
        params = {"q": queue}
        with self.clients.errors(f"removing the bindings of {queue!r}"):
            rows = list(self.table.query_entities(flt, parameters=params,
                                                  select=["PartitionKey", "RowKey", "exchange"]))
            for row in rows:
                if exchanges is None or row.get("exchange") in exchanges:
                    self.table.delete_entity(row["PartitionKey"], row["RowKey"])
        with self._lock:
            self._written = {m for m in self._written if m[2] != queue}
            self._cache.clear()

    def unbind(self, exchange: str, routing_key: str, queue: str) -> None:
        """Remove one binding."""
        with self.clients.errors(f"removing a binding of exchange {exchange!r}"):
            self.table.delete_entity(self._partition(exchange), _key(queue, routing_key))
        with self._lock:
            self._written.discard((exchange, routing_key, queue))
            self._cache.pop(exchange, None)

    def lookup(self, exchange: str, fresh: bool = False) -> list[tuple[str, str]]:
        """``(routing_key, queue)`` pairs bound to ``exchange`` (cached briefly)."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(exchange)
        if cached is not None and not fresh and now - cached[0] < self.cache_seconds:
            return cached[1]
        with self.clients.errors(f"reading the bindings of exchange {exchange!r}"):
            rows = self.table.query_entities(
                "PartitionKey eq @p", parameters={"p": self._partition(exchange)},
                select=["routing_key", "queue"])
            pairs = [(row.get("routing_key") or "", row["queue"]) for row in rows]
        with self._lock:
            self._cache[exchange] = (now, pairs)
        return pairs


class SharedBindingsMixin:
    """Channel methods that route through the shared table as well as local bindings."""

    transport: Any
    deadletter_queue: Any
    typeof: Any
    get_table: Any
    _send: Any

    def _queue_bind(self, exchange: str, routing_key: str, pattern: Any, queue: str) -> None:
        self.transport.bindings.bind(exchange, routing_key, queue, self.typeof(exchange).type)

    def _lookup(self, exchange: str, routing_key: str, default: Any = None) -> list[str]:
        """Queues for ``exchange``/``routing_key``: local bindings, then the shared table."""
        if default is None:
            default = self.deadletter_queue
        if not exchange:
            return [routing_key or default]
        etype = self.typeof(exchange)
        try:
            found = etype.lookup(self.get_table(exchange), exchange, routing_key, default)
        except KeyError:
            found = set()
        if not found:
            for fresh in (False, True):
                table = [
                    etype.prepare_bind(q, exchange, rkey, None)
                    for rkey, q in self.transport.bindings.lookup(exchange, fresh=fresh)
                ]
                found = etype.lookup(table, exchange, routing_key, default)
                if found:
                    break
        if not found and default is not None:
            return [default]
        return list(found)

    def _put_fanout(self, exchange: str, message: dict[str, Any], routing_key: str,
                    **kwargs: Any) -> None:
        queues = {q for _, q in self.transport.bindings.lookup(exchange)}
        with contextlib.suppress(KeyError):
            queues.update(q for _, _, q in self.get_table(exchange))
        ttl = self.transport.options.fanout_message_ttl
        for queue in sorted(queues):
            try:
                self._send(queue, message, create=False, ttl=ttl)
            except AzureStorageError as exc:
                if not exc.not_found:
                    raise
                logger.info("azurequeue: dropping the binding of vanished queue %s", queue)
                self.transport.bindings.unbind_queue(queue, [exchange])

