"""Adaptive polling per physical queue: fast while messages flow, backing off when idle.

Azure Storage Queue has no long polling, so an idle worker pays one call per poll.
As in the seed's hosted service, an empty queue waits ``polling_interval`` before
its next poll, then 1.3 times longer after each further empty poll, up to
``max_polling_interval``; a queue that returned messages is polled again at once.
While any queue of the connection is delivering, an empty one is re-checked at
least every second, so a new high-priority or control message is not left waiting
behind a busy queue for the whole idle interval. While the worker holds messages
(tasks prefetched or running), every queue it polls is re-checked at least every
``polling_interval``: that is when ``celery inspect``, revoke and cancel are asked,
and those replies should be as prompt as on Redis. An idle worker backs off to
``max_polling_interval`` (1 s by default: a new task starts within about a second).
A reply queue (``celery inspect`` waiting for answers) is polled every
:data:`REPLY_POLL` seconds while it is consumed: only for the length of the call.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["BACKOFF", "PollSchedule"]

BACKOFF = 1.3
#: Longest wait for an empty queue while another queue of the connection is busy.
BUSY_RECHECK = 1.0
#: Longest wait for a reply queue being consumed (a control call waiting for replies).
REPLY_POLL = 0.05


class PollSchedule:
    """When each physical queue is due for its next receive."""

    def __init__(self, minimum: float, maximum: float,
                 holding: Callable[[], bool] | None = None) -> None:
        self.minimum = max(0.0, minimum)
        self.maximum = max(self.minimum, maximum)
        #: True while the connection holds messages: poll at ``minimum`` at most.
        self.holding = holding or (lambda: False)
        #: Physical reply queues being consumed: polled every REPLY_POLL at most.
        self.reply_queues: set[str] = set()
        self._interval: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self._busy_until = 0.0
        self._lock = threading.Lock()

    def _wait(self, name: str, now: float) -> float:
        interval = self._interval.get(name, 0.0)
        if now < self._busy_until:
            interval = min(interval, BUSY_RECHECK)
        if interval > self.minimum and self.holding():
            interval = self.minimum
        if name in self.reply_queues:
            interval = min(interval, REPLY_POLL)
        return interval

    def due(self, name: str, now: float | None = None) -> bool:
        """True when ``name`` should be polled now."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return now >= self._last.get(name, 0.0) + self._wait(name, now)

    def record(self, name: str, received: int, now: float | None = None) -> None:
        """Note the outcome of a poll of ``name``."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._last[name] = now
            if received:
                self._interval[name] = 0.0
                self._busy_until = now + BUSY_RECHECK
            else:
                previous = self._interval.get(name, 0.0)
                grown = previous * BACKOFF if previous else self.minimum
                self._interval[name] = min(max(grown, self.minimum), self.maximum)

    def interval(self, name: str) -> float:
        """Current back-off of ``name`` (0 while it delivers)."""
        with self._lock:
            return self._interval.get(name, 0.0)

    def seconds_until_due(self, names: list[str], now: float | None = None) -> float:
        """Time until the first of ``names`` is due (0 if one is due now)."""
        now = time.monotonic() if now is None else now
        if not names:
            return self.minimum
        with self._lock:
            return max(0.0, min(self._last.get(n, 0.0) + self._wait(n, now) - now
                                for n in names))
