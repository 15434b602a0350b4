"""kombu transport for Azure Storage Queue (``azurequeue://``): reliable, batched, delayed.

What it adds over kombu's ``azurestoragequeues``: messages are leased, not deleted,
on receive (deleted on ack, visible again on reject or when a killed worker's lease
runs out, leases renewed while held); up to 32 messages per receive within the QoS
prefetch; adaptive polling; native delay for countdown/ETA; message TTL; five
priority levels as five physical queues; fanout through a shared binding table, so
``celery inspect``/``control`` work; a poison queue per queue; valid, collision-free
queue names; base64 message text for Azure Functions; claim-check through Blob
Storage for large messages (on by default); per-message TTL from ``expires``; runs
in the worker's event loop. See docs/azure.rst for the options.

Sibling modules: :mod:`.names` (queue names), :mod:`.codec` (message text),
:mod:`.credentials` (clients, secrets), :mod:`.receiving` (receive rounds, intake),
:mod:`.eventloop` (the worker's hub), :mod:`.leases`, :mod:`.bindings`,
:mod:`.poison`, :mod:`.scheduled` (delayed-message records), :mod:`.options`.
"""
from __future__ import annotations

import logging
import math
import time
from queue import Empty
from types import SimpleNamespace
from typing import Any

from kombu.transport import virtual

from . import codec, names
from .bindings import BindingRegistry, SharedBindingsMixin
from .credentials import AzureClients, AzureStorageError, BrokerUnavailable
from .eventloop import EventLoopTransportMixin, Receiver, stop_receiver
from .leases import LeaseKeeper
from .options import TransportOptions
from .poison import move_to_poison
from .polling import PollSchedule
from .receiving import ReceivingMixin
from .scheduled import ScheduledIndex
from .storage import MAX_DELAY, MessageTooLarge, QueueStorage

__all__ = ["Channel", "MessageTooLarge", "Transport"]

logger = logging.getLogger("celery_bgp.transport.azurequeue")

class QoS(virtual.QoS):
    """Prefetch accounting; a rejected message without requeue is deleted."""

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if not requeue:
            self.channel._discard(delivery_tag)
        super().reject(delivery_tag, requeue=requeue)


class Channel(ReceivingMixin, SharedBindingsMixin, virtual.Channel):
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
        #: The thread receiving for this channel under the worker's event loop.
        self.receiver: Receiver | None = None

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

    def close(self) -> None:
        stop_receiver(self)
        super().close()

    def _wake_receiver(self) -> None:
        receiver = self.receiver
        if receiver is not None:
            receiver.wake()

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
        delay = min(MAX_DELAY, max(0, math.ceil(codec.eta_seconds(message))))
        if ttl is None:
            options = self.transport.options
            default = options.fanout_message_ttl if len(levels) == 1 else options.message_ttl
            ttl = self.transport.queue_ttl.get(queue, default)
        expires_in = codec.expiration_seconds(message)
        if expires_in is not None:
            # kombu's expiration counts from now; storage adds the delay to the TTL
            # (Azure counts it from insertion). Expired, Azure drops the message, as
            # RabbitMQ does; one that expires before its ETA is dropped 1 s after it.
            expires_in = max(1, expires_in - delay)
            ttl = expires_in if ttl == -1 else min(ttl, expires_in)
        sent = self.transport.storage.send_envelope(physical, message, delay=delay, ttl=ttl,
                                                    create=create)
        if delay and len(levels) > 1:
            self.transport.scheduled.record(queue, physical, sent, message)

    # -- consuming ----------------------------------------------------------------------

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        if no_ack:
            self._noack_queues.add(queue)
        if names.is_reply_queue(queue):
            self.transport.schedule.reply_queues.update(p for _, p in self.physical_queues(queue))
        result = super().basic_consume(queue, no_ack, *args, **kwargs)
        self.transport.ensure_receiver(self)
        return result

    def basic_cancel(self, consumer_tag: str) -> Any:
        queue = self._tag_to_queue.get(consumer_tag)
        result = super().basic_cancel(consumer_tag)
        if queue is not None and queue not in self._tag_to_queue.values():
            self._noack_queues.discard(queue)
            self.transport.schedule.reply_queues.difference_update(
                p for _, p in self.physical_queues(queue))
        return result

    def drain_events(self, timeout: float | None = None, callback: Any = None) -> None:
        """Receive one batch (within the prefetch budget) from the consumed queues."""
        if not self._consumers:
            raise Empty()
        got = self.receive_round(callback or self.transport._deliver)
        if got is None:
            self.transport.qos_blocked = True
        if not got:
            raise Empty()

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        """``basic_get``: one message, highest level first."""
        for _level, physical in self.physical_queues(queue):
            for message in self.transport.storage.receive(physical, 1):
                payload = self._accept(queue, physical, message)
                if payload is not None:
                    return payload
        raise Empty()

    # -- acknowledgements ---------------------------------------------------------------

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        """Delete the message from Azure (and its claim-check blob)."""
        lease = self.transport.leases.pop(delivery_tag) if self.connection else None
        try:
            if lease is not None:
                self.transport.leases.ack(lease)
        finally:
            super().basic_ack(delivery_tag)
            self._wake_receiver()  # a prefetch slot is free (the ack may come from any thread)

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
        self._wake_receiver()
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


class Transport(EventLoopTransportMixin, virtual.Transport):
    """Azure Storage Queue transport; one set of Azure clients per connection.

    Runs in the worker's event loop (see :mod:`.eventloop`); ``drain_events`` serves
    every other consumer (``celery inspect``, plain kombu, gevent/eventlet workers).
    """

    Channel = Channel

    driver_type = "azurequeue"
    driver_name = "azure-storage-queue"
    default_port = None
    polling_interval = 0.2
    connection_errors = (*virtual.Transport.connection_errors, BrokerUnavailable)
    channel_errors = (*virtual.Transport.channel_errors, AzureStorageError)
    implements = virtual.Transport.implements.extend(
        asynchronous=True,
        exchange_type=frozenset(["direct", "topic", "fanout"]),
    )

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.options = TransportOptions.from_transport_options(client.transport_options)
        self.polling_interval = self.options.polling_interval
        hostname = client.hostname if client.hostname not in (None, "localhost") else None
        self.clients = AzureClients(client.transport_options, hostname,
                                    connect_timeout=client.connect_timeout)
        self.leases = LeaseKeeper(self.clients, self.options.visibility_timeout,
                                  self.options.ack_threads)
        self.bindings = BindingRegistry(self.clients, self.options.queue_name_prefix,
                                        self.options.binding_table)
        self.storage = QueueStorage(self.clients, self.options)
        self.scheduled = ScheduledIndex(self.clients, self.options.queue_name_prefix,
                                        self.options.scheduled_table)
        self.queue_ttl: dict[str, int] = {}
        self.qos_blocked = False
        #: Set when a release found Azure unreachable: the rest are not tried while closing.
        self.unreachable = False
        self.schedule = PollSchedule(self.options.polling_interval,
                                     self.options.max_polling_interval,
                                     holding=lambda: len(self.leases) > 0)

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
            self.stop_event_loop()
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
