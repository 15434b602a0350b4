"""Unit tests of leases and the poll schedule, with a fake QueueClient and a fake clock.

These complement (never replace) the Azurite tests in test_transport.py.
"""
from __future__ import annotations

import dataclasses
import time
from contextlib import contextmanager

from celery_bgp.transport.credentials import AzureStorageError
from celery_bgp.transport.leases import Lease, LeaseKeeper
from celery_bgp.transport.polling import BUSY_RECHECK, PollSchedule


@dataclasses.dataclass
class Updated:
    pop_receipt: str


class FakeQueueClient:
    """Records calls; pop receipts change on every update, as Azure's do."""

    def __init__(self, fail_with: AzureStorageError | None = None) -> None:
        self.calls: list[tuple] = []
        self.receipt = 0
        self.fail_with = fail_with

    def update_message(self, message_id, pop_receipt, visibility_timeout):
        self.calls.append(("update", message_id, pop_receipt, visibility_timeout))
        if self.fail_with:
            raise self.fail_with
        self.receipt += 1
        return Updated(f"r{self.receipt}")

    def delete_message(self, message_id, pop_receipt):
        self.calls.append(("delete", message_id, pop_receipt))
        if self.fail_with:
            raise self.fail_with


class FakeClients:
    @contextmanager
    def errors(self, what):
        yield


def test_renewal_uses_the_newest_pop_receipt_and_ack_deletes_with_it():
    client = FakeQueueClient()
    keeper = LeaseKeeper(FakeClients(), visibility_timeout=10, ack_threads=0)
    lease = Lease("q", "m1", "r0", time.monotonic() + 1, client)  # due: < half left
    keeper._leases["t1"] = lease
    keeper.tick()
    assert client.calls == [("update", "m1", "r0", 10)]
    assert lease.pop_receipt == "r1"
    keeper.tick()  # not due again yet
    assert len(client.calls) == 1
    keeper.ack(keeper.pop("t1"))
    assert client.calls[-1] == ("delete", "m1", "r1")
    assert lease.done


def test_lost_lease_is_dropped_and_failed_ack_is_retried():
    gone = AzureStorageError("pop receipt mismatch", status=400)
    keeper = LeaseKeeper(FakeClients(), visibility_timeout=10, ack_threads=0)
    keeper._leases["t1"] = Lease("q", "m1", "r0", time.monotonic(), FakeQueueClient(gone))
    keeper.tick()
    assert keeper.get("t1") is None
    down = FakeQueueClient(AzureStorageError("unreachable", status=None))
    lease = Lease("q", "m2", "r0", time.monotonic() + 10, down)
    keeper.ack(lease)
    assert not lease.done and keeper._retry_deletes == [lease]
    down.fail_with = None
    keeper.tick()
    assert lease.done and down.calls[-1] == ("delete", "m2", "r0")


def test_poll_schedule_backs_off_by_1_3_and_resets():
    schedule = PollSchedule(0.2, 5.0)
    schedule.record("q", 0, now=0.0)
    assert schedule.interval("q") == 0.2
    assert not schedule.due("q", now=0.1) and schedule.due("q", now=0.2)
    assert abs(schedule.seconds_until_due(["q"], now=0.05) - 0.15) < 1e-9
    schedule.record("q", 0, now=0.0)
    assert abs(schedule.interval("q") - 0.26) < 1e-9
    for _ in range(20):
        schedule.record("q", 0, now=0.0)
    assert schedule.interval("q") == 5.0
    assert not schedule.due("q", now=BUSY_RECHECK)
    schedule.record("busy", 5, now=0.5)  # another queue delivers: recheck within a second
    assert schedule.due("q", now=BUSY_RECHECK)
    schedule.record("q", 3, now=0.0)
    assert schedule.interval("q") == 0.0 and schedule.due("q", now=0.0)


def test_poll_schedule_polls_at_the_minimum_while_messages_are_held():
    held = []
    schedule = PollSchedule(0.2, 5.0, holding=lambda: bool(held))
    for _ in range(20):
        schedule.record("pidbox", 0, now=0.0)
    assert not schedule.due("pidbox", now=2.0)
    held.append("a task")  # the worker runs a task: control replies must be prompt
    assert schedule.due("pidbox", now=0.2)
    assert abs(schedule.seconds_until_due(["pidbox"], now=0.1) - 0.1) < 1e-9


def test_a_consumed_reply_queue_is_polled_every_reply_poll():
    from celery_bgp.transport.names import is_reply_queue
    from celery_bgp.transport.polling import REPLY_POLL

    assert is_reply_queue("5f1c-2b.reply.celery.pidbox")
    assert not is_reply_queue("worker@host.celery.pidbox")
    schedule = PollSchedule(0.2, 5.0)
    schedule.reply_queues.add("reply")
    for _ in range(20):
        schedule.record("reply", 0, now=0.0)
    assert schedule.due("reply", now=REPLY_POLL)
