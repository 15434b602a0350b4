"""kombu transport for Azure Storage Queue (``azurequeue://``): reliable, batched, delayed.

What it adds over kombu's ``azurestoragequeues``: messages are leased, not deleted,
on receive (deleted on ack, visible again on reject or when a killed worker's lease
runs out, leases renewed while held); up to 32 messages per receive within the QoS
prefetch; adaptive polling; native delay for countdown/ETA; message TTL; five
priority levels as five physical queues; fanout through a shared binding table, so
``celery inspect``/``control`` work; a poison queue per queue; valid, collision-free
queue names; base64 message text for Azure Functions; claim-check through Blob
Storage for large messages. See docs/azure.rst for the options.

Sibling modules: :mod:`.names` (queue names), :mod:`.codec` (message text),
:mod:`.credentials` (clients, secrets), :mod:`.leases`, :mod:`.bindings`,
:mod:`.poison`, :mod:`.options`.
"""
from __future__ import annotations

import logging
import math
import time
import uuid
from datetime import datetime, timezone
from queue import Empty
from types import SimpleNamespace
from typing import Any

from kombu.transport import virtual

from . import codec, names
from .bindings import BindingRegistry, SharedBindingsMixin
from .credentials import AzureClients, AzureStorageError, BrokerUnavailable
from .leases import Lease, LeaseKeeper
from .options import TransportOptions
from .poison import move_to_poison
from .polling import PollSchedule
from .storage import MAX_DELAY, MessageTooLarge, QueueStorage

__all__ = ["Channel", "MessageTooLarge", "Transport"]

logger = logging.getLogger("celery_bgp.transport.azurequeue")

#: A message received this much before its ETA goes back to sleep instead of to Celery.
REDEFER_SLACK = 1.0


def _eta_seconds(envelope: dict[str, Any]) -> float:
    """Seconds until the Celery ETA of ``envelope`` (0 without one)."""
    eta = (envelope.get("headers") or {}).get("eta")
    if not eta or not isinstance(eta, str):
        return 0.0
    try:
        when = datetime.fromisoformat(eta)
    except ValueError:
        return 0.0
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return (when - datetime.now(timezone.utc)).total_seconds()


class QoS(virtual.QoS):
    """Prefetch accounting; a rejected message without requeue is deleted."""

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if not requeue:
            self.channel._discard(delivery_tag)
        super().reject(delivery_tag, requeue=requeue)


class Channel(SharedBindingsMixin, virtual.Channel):
    """One kombu channel on Azure Storage Queue."""

    QoS = QoS
    supports_fanout = True
    do_restore = True
    default_priority = None

    def __init__(self, connection: Any, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self._noack_queues: set[str] = set()
        self._receives = 0
        self._queue_cursor = 0

    # -- names --------------------------------------------------------------------------

    @property
    def transport(self) -> Transport:
        return self.connection

    def base_name(self, queue: str) -> str:
        """Base Azure queue name of Celery queue ``queue`` (prefix applied)."""
        return names.azure_queue_name(queue, self.transport.options.queue_name_prefix)

    def physical_queues(self, queue: str) -> list[tuple[int, str]]:
        """``(level, Azure queue name)`` of every physical queue of ``queue``."""
        base = self.base_name(queue)
        if names.is_single_level(queue):
            return [(names.NORMAL_LEVEL, base)]
        return [(level, names.level_queue(base, level)) for level in names.LEVELS]

    def _levels_in_order(self, queue: str) -> list[tuple[int, str]]:
        """Highest level first; every ``priority_fairness``-th receive starts lower."""
        levels = self.physical_queues(queue)
        fairness = self.transport.options.priority_fairness
        self._receives += 1
        if len(levels) > 1 and fairness and self._receives % fairness == 0:
            start = 1 + (self._receives // fairness) % (len(levels) - 1)
            levels = levels[start:] + levels[:start]
        return levels

    # -- declaring, sizing, purging -----------------------------------------------------

    def _new_queue(self, queue: str, **kwargs: Any) -> None:
        ttl = (kwargs.get("arguments") or {}).get("x-message-ttl")
        if ttl:
            self.transport.queue_ttl[queue] = max(1, int(ttl) // 1000)
        for _level, physical in self.physical_queues(queue):
            self.transport.storage.ensure_queue(physical)

    def _has_queue(self, queue: str, **kwargs: Any) -> bool:
        return self.transport.storage.queue_exists(self.base_name(queue))

    def _size(self, queue: str) -> int:
        return sum(self.transport.storage.queue_size(p) for _, p in self.physical_queues(queue))

    def _purge(self, queue: str) -> int:
        return sum(self.transport.storage.clear_queue(p) for _, p in self.physical_queues(queue))

    def _delete(self, queue: str, *args: Any, **kwargs: Any) -> None:
        for _, physical in self.physical_queues(queue):
            self.transport.storage.delete_queue(physical)
        self.transport.queue_ttl.pop(queue, None)
        try:
            self.transport.bindings.unbind_queue(queue)
        except AzureStorageError as exc:
            logger.warning("azurequeue: could not remove the bindings of %s: %s", queue, exc)

    def after_reply_message_received(self, queue: str) -> None:
        """Keep reply queues: Azure refuses to recreate a deleted queue for a while.

        kombu deletes a ``celery inspect`` reply queue after each reply; the same
        process reuses its name for the next call. Replies left behind expire after
        ``fanout_message_ttl``.
        """

    def queue_delete(self, queue: str, if_unused: bool = False, if_empty: bool = False,
                     **kwargs: Any) -> None:
        """Delete every physical queue of ``queue`` (bound here or not)."""
        if if_empty and self._size(queue):
            return
        self._delete(queue)
        self.state.queue_bindings_delete(queue)

    # -- publishing ---------------------------------------------------------------------

    def prepare_message(self, body: Any, priority: Any = None, content_type: Any = None,
                        content_encoding: Any = None, headers: Any = None,
                        properties: Any = None) -> dict[str, Any]:
        """Like kombu's, but keeps "no priority" (normal level) apart from priority 0."""
        message = super().prepare_message(body, priority, content_type, content_encoding,
                                          headers, properties)
        message["properties"]["priority"] = priority
        return message

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        self._send(queue, message, create=True)

    def _send(self, queue: str, message: dict[str, Any], create: bool,
              ttl: int | None = None) -> None:
        levels = self.physical_queues(queue)
        if len(levels) == 1:
            physical = levels[0][1]
        else:
            level = names.level_for_priority(message["properties"].get("priority"))
            physical = names.level_queue(self.base_name(queue), level)
        delay = min(MAX_DELAY, max(0, math.ceil(_eta_seconds(message))))
        if ttl is None:
            options = self.transport.options
            default = options.fanout_message_ttl if len(levels) == 1 else options.message_ttl
            ttl = self.transport.queue_ttl.get(queue, default)
        self.transport.storage.send_envelope(physical, message, delay=delay, ttl=ttl, create=create)

    # -- consuming ----------------------------------------------------------------------

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        if no_ack:
            self._noack_queues.add(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def basic_cancel(self, consumer_tag: str) -> Any:
        queue = self._tag_to_queue.get(consumer_tag)
        result = super().basic_cancel(consumer_tag)
        if queue is not None and queue not in self._tag_to_queue.values():
            self._noack_queues.discard(queue)
        return result

    def drain_events(self, timeout: float | None = None, callback: Any = None) -> None:
        """Receive one batch (within the prefetch budget) from the consumed queues."""
        callback = callback or self.transport._deliver
        if not self._consumers:
            raise Empty()
        if not self.qos.can_consume():
            self.transport.qos_blocked = True
            raise Empty()
        batch = self.transport.options.batch_size
        budget = self.qos.can_consume_max_estimate()
        if budget is not None:
            prefetch = self.qos.prefetch_count
            if budget < prefetch and budget < min(batch, prefetch) / 2:
                # Still holding at least half the prefetch: wait for a fuller batch
                # rather than pay a receive call for one or two messages.
                self.transport.qos_blocked = True
                raise Empty()
        budget = batch if budget is None else min(budget, batch)
        queues = list(self._active_queues)
        if not queues:
            raise Empty()
        self._queue_cursor = (self._queue_cursor + 1) % len(queues)
        queues = queues[self._queue_cursor:] + queues[:self._queue_cursor]
        delivered = 0
        schedule = self.transport.schedule
        for queue in queues:
            for _level, physical in self._levels_in_order(queue):
                if delivered >= budget:
                    break
                if not schedule.due(physical):
                    continue
                got = self._receive(queue, physical, budget - delivered, callback)
                schedule.record(physical, got)
                delivered += got
        if not delivered:
            raise Empty()

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        """``basic_get``: one message, highest level first."""
        for _level, physical in self.physical_queues(queue):
            for message in self.transport.storage.receive(physical, 1):
                payload = self._accept(queue, physical, message)
                if payload is not None:
                    return payload
        raise Empty()

    def polled_queues(self) -> list[str]:
        """Every physical queue this channel consumes."""
        return [p for q in self._active_queues for _, p in self.physical_queues(q)]

    def _receive(self, queue: str, physical: str, count: int, callback: Any) -> int:
        transport = self.transport
        messages = transport.storage.receive(physical, count)
        delivered = 0
        for message in messages:
            payload = self._accept(queue, physical, message)
            if payload is not None:
                callback(payload, queue)
                delivered += 1
        return delivered

    def _accept(self, queue: str, physical: str, message: Any) -> dict[str, Any] | None:
        """Turn a received queue message into a kombu payload, or deal with it here."""
        transport = self.transport
        options = transport.options
        if (message.dequeue_count or 0) > options.max_dequeue_count:
            move_to_poison(transport.storage, queue, physical, message,
                           f"received {message.dequeue_count} times, above max_dequeue_count "
                           f"{options.max_dequeue_count}")
            return None
        ref = None
        try:
            payload = codec.decode_text(message.content)
            ref = codec.claim_check_ref(payload)
            if ref is not None:
                payload = codec.parse_envelope(transport.storage.download_blob(ref["container"],
                                                                       ref["blob"]))
        except codec.UndecodableMessage as exc:
            move_to_poison(transport.storage, queue, physical, message, f"undecodable: {exc}")
            return None
        except AzureStorageError as exc:
            if not exc.not_found:
                raise
            move_to_poison(transport.storage, queue, physical, message,
                           "undecodable: its claim-check blob is missing")
            return None
        remaining = _eta_seconds(payload)
        if remaining > REDEFER_SLACK:
            transport.storage.redefer(physical, message, remaining)
            return None
        tag = uuid.uuid4().hex
        properties = payload["properties"]
        properties["delivery_tag"] = tag
        info = properties.setdefault("delivery_info", {})
        info.update(
            azure_message_id=message.id,
            azure_pop_receipt=message.pop_receipt,
            azure_queue=physical,
            azure_dequeue_count=message.dequeue_count,
            redelivered=(message.dequeue_count or 0) > 1,
        )
        lease = Lease(physical, message.id, message.pop_receipt,
                      time.monotonic() + options.visibility_timeout,
                      transport.storage.queue_client(physical), blob=ref,
                      text=message.content, celery_queue=queue)
        if queue in self._noack_queues:
            transport.leases.ack(lease)
        else:
            transport.leases.add(tag, lease)
        return payload

    # -- acknowledgements ---------------------------------------------------------------

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        """Delete the message from Azure (and its claim-check blob)."""
        lease = self.transport.leases.pop(delivery_tag) if self.connection else None
        try:
            if lease is not None:
                self.transport.leases.ack(lease)
        finally:
            super().basic_ack(delivery_tag)

    def _discard(self, delivery_tag: str) -> None:
        """A reject without requeue: the message is deleted."""
        lease = self.transport.leases.pop(delivery_tag) if self.connection else None
        if lease is not None:
            self.transport.leases.ack(lease)

    def dead_letter(self, delivery_tag: str, reason: str,
                    dequeue_count: int | None = None) -> bool:
        """Move a held message, unchanged, to its queue's poison queue with ``reason``.

        What the worker does with a message it refuses (instead of deleting it on the
        reject that follows). False when the message is not held here any more.
        """
        leases = self.transport.leases
        lease = leases.get(delivery_tag) if self.connection else None
        if lease is None or lease.text is None or lease.celery_queue is None:
            return False
        leases.pop(delivery_tag)
        with lease.lock:
            if lease.done:
                return False
            lease.done = True  # no more renewals: the message leaves its queue now
            held = SimpleNamespace(id=lease.message_id, pop_receipt=lease.pop_receipt,
                                   dequeue_count=dequeue_count, content=lease.text)
        move_to_poison(self.transport.storage, lease.celery_queue, lease.queue, held, reason)
        return True

    def _restore(self, message: Any) -> None:
        """Requeue: make the leased message visible again at once."""
        if self.connection is None:
            return
        lease = self.transport.leases.pop(message.delivery_tag)
        if lease is None or self.transport.unreachable:
            return  # Azure is down: the lease runs out and the message comes back anyway
        try:
            lease.release(self.transport.clients)
        except AzureStorageError as exc:
            if isinstance(exc, BrokerUnavailable):
                self.transport.unreachable = True
            logger.warning("azurequeue: could not release message %s (%s); it comes back "
                           "when its lease expires", lease.message_id, exc)

    def extend_lease(self, delivery_tag: str, seconds: int | None = None) -> bool:
        """Keep a held message invisible ``seconds`` longer (default: visibility_timeout).

        Leases are renewed automatically while the worker holds a message; call this
        to push the deadline further now. Returns False for an unknown tag.
        """
        return self.transport.leases.extend(delivery_tag, seconds)


class Transport(virtual.Transport):
    """Azure Storage Queue transport; one set of Azure clients per connection."""

    Channel = Channel

    driver_type = "azurequeue"
    driver_name = "azure-storage-queue"
    default_port = None
    polling_interval = 0.2
    connection_errors = (*virtual.Transport.connection_errors, BrokerUnavailable)
    channel_errors = (*virtual.Transport.channel_errors, AzureStorageError)
    implements = virtual.Transport.implements.extend(
        asynchronous=False,
        exchange_type=frozenset(["direct", "topic", "fanout"]),
    )

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.options = TransportOptions.from_transport_options(client.transport_options)
        self.polling_interval = self.options.polling_interval
        hostname = client.hostname if client.hostname not in (None, "localhost") else None
        self.clients = AzureClients(client.transport_options, hostname)
        self.leases = LeaseKeeper(self.clients, self.options.visibility_timeout,
                                  self.options.ack_threads)
        self.bindings = BindingRegistry(self.clients, self.options.queue_name_prefix,
                                        self.options.binding_table)
        self.storage = QueueStorage(self.clients, self.options)
        self.queue_ttl: dict[str, int] = {}
        self.qos_blocked = False
        #: Set when a release found Azure unreachable: the rest are not tried while closing.
        self.unreachable = False
        self.schedule = PollSchedule(self.options.polling_interval,
                                     self.options.max_polling_interval)

    def driver_version(self) -> str:
        """The azure-storage-queue version (``celery report`` prints it)."""
        try:
            from azure.storage.queue import __version__
        except ImportError:
            return "N/A"
        return str(__version__)

    @property
    def default_connection_params(self) -> dict[str, Any]:
        """No default host: ``azurequeue://`` takes the account from the options."""
        return {"port": None}

    # -- connection ---------------------------------------------------------------------

    def establish_connection(self) -> Any:
        """Check that the account answers, so kombu's retry waits for it."""
        with self.clients.errors("connecting to Azure Storage Queue"):
            next(iter(self.clients.queue_service.list_queues(results_per_page=1).by_page()),
                 None)
        return super().establish_connection()

    def close_connection(self, connection: Any) -> None:
        try:
            super().close_connection(connection)
        finally:
            self.leases.stop()
            self.clients.close()
            self.storage.close()

    def drain_events(self, connection: Any, timeout: float | None = None) -> None:
        """Deliver one batch; when every queue is empty, sleep until one is due again."""
        started = time.monotonic()
        while True:
            self.qos_blocked = False
            try:
                self.cycle.get(self._deliver, timeout=timeout)
            except Empty:
                elapsed = time.monotonic() - started
                if timeout is not None and elapsed >= timeout:
                    raise TimeoutError() from None  # socket.timeout, as kombu expects
                if self.qos_blocked:
                    wait = 0.05  # a slot frees when a task finishes: look again soon
                else:
                    polled = [p for c in self.channels for p in c.polled_queues()]
                    wait = self.schedule.seconds_until_due(polled)
                    wait = max(wait, min(0.01, self.options.polling_interval))
                if timeout is not None:
                    wait = min(wait, max(0.0, timeout - elapsed))
                if wait:
                    time.sleep(wait)
            else:
                return
