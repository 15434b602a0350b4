"""Leases on received messages: renewed while the worker holds them, released on ack.

A received message stays invisible for ``visibility_timeout`` seconds. The
:class:`LeaseKeeper` thread of each connection pushes that deadline back while the
message is held (prefetched or running, however long the task takes), so a live
worker never loses a message to another, while a killed worker's messages come
back once their current lease runs out. Acks (deletes) run on a few threads so the
consumer never waits for them, and deletes that fail (Azure unreachable) are retried
by the keeper thread until they succeed or the lease is gone. A delete still pending
when the process is killed only means the message is delivered again (at least once).
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from .credentials import AzureStorageError

__all__ = ["Lease", "LeaseKeeper"]

logger = logging.getLogger("celery_bgp.transport.azurequeue")


@dataclasses.dataclass
class Lease:
    """One received message: where it lives, its current pop receipt and deadline."""

    queue: str
    message_id: str
    pop_receipt: str
    visible_at: float  # time.monotonic() when the message becomes visible again
    client: Any = None  # the QueueClient it came from
    blob: dict[str, Any] | None = None  # claim-check reference, deleted after the ack
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)
    done: bool = False
    #: The queue text as received and its Celery queue name, to dead-letter it unchanged.
    text: str | None = dataclasses.field(default=None, repr=False)
    celery_queue: str | None = None

    def renew(self, clients: Any, seconds: int) -> None:
        """Make the message invisible for ``seconds`` more (new pop receipt)."""
        with self.lock:
            if self.done:
                return
            with clients.errors(f"extending the lease of a message in {self.queue}"):
                updated = self.client.update_message(
                    self.message_id, self.pop_receipt, visibility_timeout=seconds)
            self.pop_receipt = updated.pop_receipt
            self.visible_at = time.monotonic() + seconds

    def release(self, clients: Any, visible_in: int = 0) -> None:
        """Give the message back: visible again after ``visible_in`` seconds."""
        with self.lock:
            if self.done:
                return
            with clients.errors(f"releasing a message in {self.queue}"):
                self.client.update_message(
                    self.message_id, self.pop_receipt, visibility_timeout=visible_in)
            self.done = True

    def delete(self, clients: Any) -> None:
        """Delete the message (the ack), then its claim-check blob if it had one."""
        with self.lock:
            if not self.done:
                with clients.errors(f"deleting an acked message from {self.queue}"):
                    self.client.delete_message(self.message_id, self.pop_receipt)
                self.done = True
        if self.blob is not None:
            ref, self.blob = self.blob, None
            with clients.errors("deleting a claim-check blob"):
                try:
                    clients.blob_service.get_blob_client(
                        ref["container"], ref["blob"]).delete_blob()
                except Exception:
                    self.blob = ref
                    raise


class LeaseKeeper:
    """Tracks the leases of one connection and renews them in a daemon thread."""

    def __init__(self, clients: Any, visibility_timeout: int, ack_threads: int = 4) -> None:
        self.clients = clients
        self.visibility_timeout = visibility_timeout
        self.ack_threads = ack_threads
        self._executor: ThreadPoolExecutor | None = None
        self._pending: set[Future] = set()
        self.interval = max(0.5, min(30.0, visibility_timeout / 4))
        self._leases: dict[str, Lease] = {}
        self._retry_deletes: list[Lease] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._leases)

    def add(self, tag: str, lease: Lease) -> None:
        """Keep ``lease`` alive until :meth:`pop` takes it out."""
        with self._lock:
            self._leases[tag] = lease
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._run, name="celery-bgp-azure-leases", daemon=True)
                self._thread.start()

    def get(self, tag: str) -> Lease | None:
        with self._lock:
            return self._leases.get(tag)

    def pop(self, tag: str) -> Lease | None:
        with self._lock:
            return self._leases.pop(tag, None)

    def extend(self, tag: str, seconds: int | None = None) -> bool:
        """Extend one lease now (False if the tag is unknown)."""
        lease = self.get(tag)
        if lease is None:
            return False
        lease.renew(self.clients, int(seconds or self.visibility_timeout))
        return True

    def ack(self, lease: Lease) -> None:
        """Delete an acked message in the background (inline with ``ack_threads=0``)."""
        if not self.ack_threads:
            self._ack_now(lease)
            return
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.ack_threads,
                                                    thread_name_prefix="celery-bgp-azure-ack")
            future = self._executor.submit(self._ack_now, lease)
            self._pending.add(future)
        future.add_done_callback(self._done)

    def background(self, fn: Any, *args: Any) -> None:
        """Run ``fn(*args)`` on the ack threads (inline with ``ack_threads=0``)."""
        if not self.ack_threads:
            fn(*args)
            return
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.ack_threads,
                                                    thread_name_prefix="celery-bgp-azure-ack")
            future = self._executor.submit(fn, *args)
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future) -> None:
        with self._lock:
            self._pending.discard(future)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until acks handed over so far reached Azure; False on timeout."""
        with self._lock:
            pending = list(self._pending)
        if not pending:
            return True
        _done, not_done = wait(pending, timeout)
        return not not_done

    def _ack_now(self, lease: Lease) -> None:
        """Delete an acked message; on failure retry it from the keeper thread."""
        try:
            lease.delete(self.clients)
        except AzureStorageError as exc:
            if exc.status in (400, 404):  # pop receipt stale: the lease had already expired
                logger.warning("azurequeue: ack of message %s in %s came too late (%s); "
                               "it may be delivered again", lease.message_id, lease.queue, exc)
                return
            logger.warning("azurequeue: ack of message %s failed (%s); retrying",
                           lease.message_id, exc)
            with self._lock:
                self._retry_deletes.append(lease)

    def stop(self, flush: bool = True) -> None:
        """Stop renewing (the leases then run out by themselves); finish pending acks."""
        self._stop.set()
        if flush:
            self.flush()
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=flush)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception:
                logger.exception("azurequeue: lease renewal failed")

    def tick(self) -> None:
        """Renew leases running out within half a visibility timeout; retry deletes."""
        now = time.monotonic()
        margin = self.visibility_timeout / 2
        with self._lock:
            due = [(t, x) for t, x in self._leases.items() if x.visible_at - now < margin]
            retries, self._retry_deletes = self._retry_deletes, []
        for tag, lease in due:
            try:
                lease.renew(self.clients, self.visibility_timeout)
            except AzureStorageError as exc:
                if exc.status in (400, 404):
                    logger.warning("azurequeue: lost the lease of message %s in %s (%s)",
                                   lease.message_id, lease.queue, exc)
                    self.pop(tag)
                else:
                    logger.warning("azurequeue: could not extend a lease (%s); will retry", exc)
        for lease in retries:
            if lease.visible_at <= time.monotonic() and not lease.done:
                continue  # the lease ran out: the message is back in the queue anyway
            self._ack_now(lease)
