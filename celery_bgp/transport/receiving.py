"""The receiving half of an ``azurequeue://`` channel: budgets, rounds, message intake.

Shared by both ways a channel is driven: ``drain_events`` (the blocking loop, plain
kombu consumers) and the receiver thread of the worker's event loop
(:mod:`.eventloop`). A round visits the due physical queues, highest priority first,
and turns each received Azure message into a kombu payload, or deals with it here:
poison (too many deliveries, undecodable), a claim-check download, a message received
before its ETA put back to sleep.
"""
from __future__ import annotations

import time
import uuid
from typing import Any

from . import codec
from .credentials import AzureStorageError
from .leases import Lease
from .poison import move_to_poison

__all__ = ["REDEFER_SLACK", "ReceivingMixin"]

#: A message received this much before its ETA goes back to sleep instead of to Celery.
REDEFER_SLACK = 1.0


class ReceivingMixin:
    """Channel methods that receive; the channel gives queues, QoS and the transport."""

    transport: Any
    qos: Any
    physical_queues: Any
    _active_queues: list[str]
    _noack_queues: set[str]
    _receives: int
    _queue_cursor: int

    def _levels_in_order(self, queue: str) -> list[tuple[int, str]]:
        """Highest level first; every ``priority_fairness``-th receive starts lower."""
        levels = self.physical_queues(queue)
        fairness = self.transport.options.priority_fairness
        self._receives += 1
        if len(levels) > 1 and fairness and self._receives % fairness == 0:
            start = 1 + (self._receives // fairness) % (len(levels) - 1)
            levels = levels[start:] + levels[:start]
        return levels

    def receive_budget(self, pending: int = 0) -> int:
        """How many messages the next round may receive (0: prefetch full or nearly).

        ``pending`` counts messages received but not yet handed to kombu (the event
        loop's inbox): they already use prefetch slots.
        """
        batch = self.transport.options.batch_size
        budget = self.qos.can_consume_max_estimate()
        if budget is None:
            return batch
        budget -= pending
        if budget <= 0:
            return 0
        prefetch = self.qos.prefetch_count
        if budget < prefetch and budget < min(batch, prefetch) / 2:
            # Still holding at least half the prefetch: wait for a fuller batch
            # rather than pay a receive call for one or two messages.
            return 0
        return min(budget, batch)

    def receive_round(self, callback: Any, pending: int = 0) -> int | None:
        """One receive from each due queue; messages delivered, None if prefetch is full."""
        budget = self.receive_budget(pending)
        if not budget:
            return None
        queues = list(self._active_queues)
        if not queues:
            return 0
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
        return delivered

    def seconds_until_due(self) -> float:
        """Time until one of this channel's queues is due for a receive."""
        return self.transport.schedule.seconds_until_due(self.polled_queues())

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
        if transport.scheduled.enabled and (payload.get("headers") or {}).get("eta"):
            transport.leases.background(transport.scheduled.forget, physical, message.id)
        remaining = codec.eta_seconds(payload)
        if remaining > REDEFER_SLACK:
            sent = transport.storage.redefer(physical, message, remaining)
            transport.scheduled.record(queue, physical, sent, payload)
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
