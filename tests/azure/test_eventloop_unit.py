"""The event-loop inbox: messages put by receiver threads always wake the hub (no Azure)."""
from __future__ import annotations

import select
import threading

from celery_bgp.transport.eventloop import Inbox


class _Receiver:
    def __init__(self) -> None:
        self.done = 0

    def pending_done(self) -> None:
        self.done += 1


def test_every_put_is_delivered_with_a_wakeup_under_contention():
    """Four threads put 20,000 items while a hub-like loop waits on the pipe only."""
    delivered: list[tuple[int, int]] = []
    inbox = Inbox(lambda payload, queue: delivered.append(payload))
    receiver = _Receiver()
    count, threads = 5000, 4

    def put(n: int) -> None:
        for i in range(count):
            inbox.put((receiver, "q", (n, i)))

    workers = [threading.Thread(target=put, args=(n,)) for n in range(threads)]
    for t in workers:
        t.start()
    while len(delivered) < count * threads:
        ready, _, _ = select.select([inbox.read_fd], [], [], 5.0)
        assert ready, f"no wake-up with {len(inbox._items)} items waiting"
        inbox.on_readable()
    for t in workers:
        t.join()
    assert sorted(delivered) == sorted((n, i) for n in range(threads) for i in range(count))
    assert receiver.done == count * threads
    assert inbox.close() == []


def test_a_receiver_error_reaches_the_hub_after_the_messages_before_it():
    delivered: list[object] = []
    inbox = Inbox(lambda payload, queue: delivered.append(payload))
    receiver = _Receiver()
    inbox.put((receiver, "q", "first"))
    inbox.put((receiver, None, ConnectionError("Azure unreachable")))
    try:
        inbox.on_readable()
    except ConnectionError as exc:
        assert "unreachable" in str(exc)
    else:
        raise AssertionError("the receiver's error was swallowed")
    assert delivered == ["first"]
    inbox.close()
