"""Running ``azurequeue://`` in Celery's event loop (the worker's hub), as Redis does.

Azure Storage Queue has no socket to watch, so the receives cannot be multiplexed by
the hub itself. Instead every consuming channel gets a :class:`Receiver` thread that
makes the blocking SDK calls (receive, claim-check download, re-defer) and hands
the messages over through an :class:`Inbox`: a locked deque plus a self-pipe whose
read end is registered with ``hub.add_reader``. The hub thread delivers them, so
Celery's callbacks, QoS and acks stay on the thread that owns them, and the pool
never blocks a receive. Because the control channel (``celery inspect``, revoke,
``bgp_cancel``) has a receiver of its own, a control message is received while
every pool process is busy and its reply leaves at once.

Acks may come from any thread (``-P threads``, a user's own thread): they only mark
the QoS tag and hand the delete to the lease keeper's ack threads, then wake the
receiver so the freed prefetch slot is filled without waiting for a poll.
"""
from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
from typing import Any

__all__ = ["Inbox", "Receiver"]

logger = logging.getLogger("celery_bgp.transport.azurequeue")

#: Longest wait of a receiver whose prefetch is full, in case a wake-up was missed.
QOS_RECHECK = 0.25
#: Shortest sleep between two rounds that received nothing (a floor for busy loops).
MIN_IDLE_WAIT = 0.01


class Inbox:
    """Messages received by receiver threads, waiting for the hub thread.

    ``put`` may be called from any thread; ``on_readable`` runs on the hub when the
    pipe becomes readable and delivers everything queued so far.
    """

    def __init__(self, deliver: Any) -> None:
        self._deliver = deliver
        self._items: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self._signalled = False
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)
        self.closed = False

    def put(self, item: tuple[Any, ...]) -> None:
        """Queue ``(receiver, queue, payload)`` or ``(receiver, None, exception)``."""
        with self._lock:
            self._items.append(item)
            if self._signalled or self.closed:
                return
            self._signalled = True
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self.write_fd, b"\x01")

    def take_all(self) -> list[tuple[Any, ...]]:
        """Everything queued so far (the hub's share, or what is left at close).

        The pipe is drained first: a put after the drain either lands in this take or
        writes a new byte, so no message is left waiting without a wake-up.
        """
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self.read_fd, 512):
                pass
        with self._lock:
            items, self._items = list(self._items), collections.deque()
            self._signalled = False
        return items

    def on_readable(self) -> None:
        """Hub reader: deliver the queued messages; re-raise a receiver's error."""
        error = None
        for receiver, queue, payload in self.take_all():
            receiver.pending_done()
            if queue is None:
                error = error or payload
                continue
            self._deliver(payload, queue)
        if error is not None:
            raise error

    def close(self) -> list[tuple[Any, ...]]:
        """Close the pipe; returns the items never delivered (their leases to release)."""
        self.closed = True
        left = self.take_all()
        for fd in (self.read_fd, self.write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        return left


class Receiver:
    """The thread that receives for one channel while the hub delivers."""

    def __init__(self, channel: Any, inbox: Inbox) -> None:
        self.channel = channel
        self.inbox = inbox
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"celery-bgp-azure-receive-{id(channel):x}")

    def start(self) -> Receiver:
        self.thread.start()
        return self

    def wake(self) -> None:
        """Look again now (a prefetch slot was freed, a queue was added)."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def pending_done(self) -> None:
        with self._pending_lock:
            self._pending -= 1

    def _push(self, payload: dict[str, Any], queue: str) -> None:
        with self._pending_lock:
            self._pending += 1
        self.inbox.put((self, queue, payload))

    def _run(self) -> None:
        channel = self.channel
        while not self._stop.is_set():
            self._wake.clear()
            try:
                got = channel.receive_round(self._push, pending=self._pending)
            except Exception as exc:  # handed to the hub: kombu decides what it means
                if not self._stop.is_set():
                    with self._pending_lock:
                        self._pending += 1
                    self.inbox.put((self, None, exc))
                return
            if got:
                continue
            # None: the prefetch is full, an ack (or a cancel) wakes us before the recheck
            self._wake.wait(QOS_RECHECK if got is None
                            else max(MIN_IDLE_WAIT, channel.seconds_until_due()))


class EventLoopTransportMixin:
    """Transport half: register the inbox with the hub, one receiver per consuming channel."""

    channels: list[Any]
    _deliver: Any
    leases: Any
    clients: Any

    _inbox: Inbox | None = None
    _hub: Any = None

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        """Called by the worker once connected: deliveries from now on go through ``loop``."""
        if self._inbox is None or self._inbox.closed:
            self._inbox = Inbox(self._deliver_one)
        self._hub = loop
        loop.add_reader(self._inbox.read_fd, self._inbox.on_readable)
        for channel in list(self.channels):
            if channel._consumers:
                self.ensure_receiver(channel)

    def ensure_receiver(self, channel: Any) -> None:
        """Start ``channel``'s receiver thread if the hub drives this transport."""
        if self._hub is None or self._inbox is None or self._inbox.closed:
            return
        receiver = channel.receiver
        if receiver is None or receiver.stopped:
            channel.receiver = Receiver(channel, self._inbox).start()
        else:
            receiver.wake()

    def _deliver_one(self, payload: dict[str, Any], queue: str) -> None:
        try:
            self._deliver(payload, queue)
        except Exception:
            logger.exception("azurequeue: delivering a message from %s failed", queue)

    def stop_event_loop(self) -> None:
        """Stop every receiver, close the inbox, give undelivered messages back."""
        for channel in list(self.channels):
            stop_receiver(channel)
        inbox, self._inbox = self._inbox, None
        if inbox is None:
            return
        if self._hub is not None:
            with contextlib.suppress(Exception):
                self._hub.remove_reader(inbox.read_fd)
        for _receiver, queue, payload in inbox.close():
            if queue is not None and not getattr(self, "unreachable", False):
                self.release_undelivered(payload)

    def release_undelivered(self, payload: dict[str, Any]) -> None:
        tag = payload["properties"].get("delivery_tag")
        lease = self.leases.pop(tag) if tag else None
        if lease is not None:
            with contextlib.suppress(Exception):
                lease.release(self.clients)


def stop_receiver(channel: Any) -> None:
    """Stop the receiver thread of ``channel``, if it has one."""
    receiver, channel.receiver = getattr(channel, "receiver", None), None
    if receiver is not None:
        receiver.stop()
