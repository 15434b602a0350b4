"""Writes events for the signal receivers without ever failing or slowing the task.

In ``background`` mode (the default) an event is queued and a writer thread sends
batches with :meth:`EventRepository.add_many`, so a dispatch or a task never waits
for a round trip and bursts share one (the writer lingers ``linger`` seconds after
the first event of a batch). The writer is woken once per batch, not per event:
queueing an event is an append under a lock, and only the first event of a batch
(or an urgent one, or a full batch) wakes the thread, because each wake-up costs the
recording thread context switches and the GIL hand-off, on every task of a worker.

A failing backend is retried for a while (events catch up when it returns), then
the batch is dropped, logged and counted.
``sync`` mode writes inline (still never raising), for tests and for processes that
must not keep a thread.

A final event recorded before a message is acknowledged (``acks_late``) is *urgent*:
the caller waits (:meth:`EventRecorder.wait_written`) until the writer has written it,
and the writer stops lingering as soon as it holds one, so the event costs one round
trip, shared with the events queued before it (the command's PROCESSING, usually).
While the store is failing nobody waits: the event stays queued, as any other.

One bad event never takes its batch down: each event is checked before writing
(:func:`~celery_bgp.events.model.event_problem`), and when the store refuses a batch
for a reason tied to one event (its :attr:`EventRepository.event_errors`) the events
are written one by one. A refused event is quarantined (kept in memory, the last
:data:`QUARANTINE_SIZE`), logged and counted by reason in :class:`RecorderStats`.
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .model import CommandEvent, event_problem
from .repository import EventRepository

__all__ = ["EventRecorder", "RecorderStats"]

logger = logging.getLogger("celery_bgp.events")

MODES = ("background", "sync")
#: Seconds without events after which the writer tells the repository it is idle.
IDLE_AFTER = 1.0
#: Quarantined events kept in memory per recorder (the oldest go first).
QUARANTINE_SIZE = 100
#: Per-event store errors assumed when a repository declares none.
EVENT_ERRORS: tuple[type[BaseException], ...] = (TypeError, ValueError)


@dataclass
class RecorderStats:
    """Counters since the recorder started in this process.

    ``dropped``: events given up on whole (queue full, store down past ``retry_for``).
    ``quarantined``: events refused alone (malformed, or the store refused that event);
    the rest of their batch was written. ``reasons``: how many events were dropped or
    quarantined for each reason (``"quarantined: command_id is a int, not ..."``).
    """

    recorded: int = 0
    written: int = 0
    dropped: int = 0
    write_errors: int = 0
    quarantined: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


class EventRecorder:
    """Queue-and-batch writer in front of an :class:`EventRepository`."""

    def __init__(
        self,
        repository: Callable[[], EventRepository],
        mode: str = "background",
        *,
        batch_size: int = 500,
        linger: float = 0.05,
        max_pending: int = 100_000,
        retry_for: float = 30.0,
        final_timeout: float = 5.0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"event write mode must be one of {MODES}, got {mode!r}")
        self._repository_factory = repository
        self._repository: EventRepository | None = None
        self.mode = mode
        self.batch_size = batch_size
        self.linger = linger
        self.max_pending = max_pending
        self.retry_for = retry_for
        #: Longest wait in :meth:`wait_written` (a store that hangs, not one that fails).
        self.final_timeout = final_timeout
        self.stats = RecorderStats()
        self._quarantine: deque[tuple[CommandEvent, str]] = deque(maxlen=QUARANTINE_SIZE)
        self._reset()
        _live_recorders.add(self)

    def _reset(self) -> None:
        """(Re)create per-process state: at start and in a forked child."""
        self._pid = os.getpid()
        self._buffer: deque[CommandEvent] = deque()  # queued, not yet taken by the writer
        self._pending = 0  # queued or being written
        lock = threading.Lock()
        self._lock = lock  # record() takes it bare: Condition.__enter__ is a Python call
        self._cond = threading.Condition(lock)  # waiters: flush() and wait_written()
        self._wake = threading.Condition(lock)  # waiter: the writer thread
        self._writer_waits = False  # the writer sleeps on _wake for the next batch
        self._lingering = False  # the writer sleeps on _wake until the linger ends
        self._thread: threading.Thread | None = None
        self._running = False  # the writer thread runs (cheaper than is_alive per event)
        self._stats_lock = threading.Lock()
        self._queued = 0  # events ever queued: the ticket of the last one
        self._done = 0  # events the writer has finished with (written or given up)
        self._urgent = 0  # ticket of the last urgent event: stop lingering before it
        self._failing = False  # the last write failed: urgent events do not wait

    @property
    def repository(self) -> EventRepository:
        """The repository, built on first use in each process."""
        if self._repository is None:
            self._repository = self._repository_factory()
        return self._repository

    def record(self, event: CommandEvent, urgent: bool = False, soon: bool = False) -> int:
        """Store ``event`` eventually; never raises.

        ``urgent``: the caller will wait for it (:meth:`wait_written`), so the writer
        sends it without lingering (unless :attr:`final_timeout` is 0: nobody waits).
        ``soon``: send it without lingering, though nobody waits (a chain step's final
        event, whose next step may already run in another process).
        Returns the ticket to wait for (0: nothing to wait for: written inline, or
        dropped).
        """
        urgent = soon or (urgent and self.final_timeout > 0)  # (a forked child resets)
        if self.mode == "sync":
            with self._stats_lock:
                self.stats.recorded += 1
            self._write([event], retry=False)
            return 0
        with self._lock:
            self.stats.recorded += 1
            if self._pending >= self.max_pending:
                self._count_dropped(1, "the write queue is full", "write queue full")
                return 0
            self._pending += 1
            self._queued += 1
            ticket = self._queued
            if urgent:
                self._urgent = ticket
            self._buffer.append(event)  # under the lock: tickets follow the queue's order
            if self._writer_waits or (self._lingering and (
                    urgent or len(self._buffer) >= self.batch_size)):
                self._wake.notify()
        if not self._running:
            self._start()
        return ticket

    def wait_written(self, ticket: int, timeout: float | None = None) -> bool:
        """Wait until the event of ``ticket`` (from :meth:`record`) is written.

        Returns at once while the store is failing (the event stays queued and is
        written when the store is back); waits at most ``timeout`` (default
        :attr:`final_timeout`) for a store that does not answer. True if written.
        """
        if not ticket or self._pid != os.getpid():
            return True
        if timeout is None and self.final_timeout <= 0:
            return self._done >= ticket
        deadline = time.monotonic() + (self.final_timeout if timeout is None else timeout)
        with self._cond:
            while self._done < ticket:
                remaining = deadline - time.monotonic()
                if self._failing or remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def quarantined(self) -> list[tuple[CommandEvent, str]]:
        """The last events refused alone, with why (see :class:`RecorderStats`)."""
        return list(self._quarantine)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until queued events are written (or dropped); False on timeout.

        Someone waits, so the writer stops lingering (a read of this process's own
        events, as ``bgp.events.latest`` does, costs no linger).
        """
        if self._pid != os.getpid():
            return True
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._pending:
                self._urgent = self._queued
                if self._lingering:
                    self._wake.notify()
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def _start(self) -> None:
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(
                target=self._run, name="celery-bgp-events", daemon=True
            )
            self._running = True
            self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                batch = self._next_batch()
                try:
                    self._write(batch, retry=True)
                finally:
                    with self._cond:
                        self._pending -= len(batch)
                        self._done += len(batch)
                        self._cond.notify_all()
        finally:  # the next record() starts another writer
            self._running = False

    def _next_batch(self) -> list[CommandEvent]:
        """Sleep until events come, linger for more, then take up to ``batch_size``.

        Lingering lets a burst (or PROCESSING + PROCESSED of a fast task) share one
        round trip; the first event's wait bounds the added latency. An urgent event
        (someone waits for it) or a full batch ends the lingering.
        """
        with self._wake:
            while not self._buffer:
                self._writer_waits = True
                try:
                    woken = self._wake.wait(IDLE_AFTER)
                finally:
                    self._writer_waits = False
                if not woken and not self._buffer:
                    self._wake.release()  # the idle hook may do I/O: not under the lock
                    try:
                        self._idle()
                    finally:
                        self._wake.acquire()
                    while not self._buffer:
                        self._writer_waits = True
                        try:
                            self._wake.wait()
                        finally:
                            self._writer_waits = False
            start = self._done  # tickets above this one are in this batch or later
            deadline = time.monotonic() + self.linger
            self._lingering = True
            try:
                while len(self._buffer) < self.batch_size and self._urgent <= start:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._wake.wait(remaining)
            finally:
                self._lingering = False
            take = min(len(self._buffer), self.batch_size)
            return [self._buffer.popleft() for _ in range(take)]

    def _idle(self) -> None:
        try:
            self.repository.on_idle()
        except Exception:
            logger.debug("celery-bgp: event repository idle hook failed", exc_info=True)

    def _write(self, batch: list[CommandEvent], retry: bool) -> None:
        good = []
        for event in batch:
            problem = event_problem(event)
            if problem is None:
                good.append(event)
            else:
                self._quarantine_event(event, problem, problem)
        if good:
            self._write_until(good, time.monotonic() + (self.retry_for if retry else 0))

    def _write_until(self, batch: Sequence[CommandEvent], deadline: float) -> None:
        delay = 0.05
        alone_refused = False
        while True:
            try:
                self.repository.add_many(batch)
            except Exception as exc:  # never let the store break a task
                if isinstance(exc, getattr(self._repository, "event_errors", EVENT_ERRORS)):
                    if len(batch) > 1:
                        # Tied to one event: write them one by one so the good ones land.
                        logger.warning(
                            "celery-bgp: the event store refused a batch of %d events "
                            "(%s: %s); writing them one by one", len(batch),
                            type(exc).__name__, exc)
                        for event in batch:
                            self._write_until([event], deadline)
                        return
                    if alone_refused:  # twice: not a conflict with another writer
                        self._quarantine_event(
                            batch[0], f"refused by the store: {type(exc).__name__}",
                            f"{type(exc).__name__}: {exc}")
                        return
                    alone_refused = True
                    continue
                with self._stats_lock:
                    self.stats.write_errors += 1
                self._set_failing(True)
                if time.monotonic() + delay > deadline:
                    self._count_dropped(len(batch), f"{type(exc).__name__}: {exc}",
                                        f"store unavailable: {type(exc).__name__}")
                    return
                if self.stats.write_errors == 1 or self.stats.write_errors % 100 == 0:
                    logger.warning(
                        "celery-bgp: event repository write failed (%s); retrying", exc
                    )
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
            else:
                with self._stats_lock:
                    self.stats.written += len(batch)
                self._set_failing(False)
                return

    def _set_failing(self, failing: bool) -> None:
        if self._failing is not failing:
            with self._cond:
                self._failing = failing
                self._cond.notify_all()  # waiters stop waiting for a failing store

    def _count_dropped(self, count: int, why: str, reason: str | None = None) -> None:
        with self._stats_lock:
            before = self.stats.dropped
            self.stats.dropped += count
            key = f"dropped: {reason or why}"
            self.stats.reasons[key] = self.stats.reasons.get(key, 0) + count
        if before == 0 or before // 1000 != self.stats.dropped // 1000:
            logger.error(
                "celery-bgp: dropped %d command event(s) (%d so far): %s",
                count, self.stats.dropped, why,
            )

    def _quarantine_event(self, event: CommandEvent, reason: str, detail: str) -> None:
        with self._stats_lock:
            self.stats.quarantined += 1
            count = self.stats.quarantined
            key = f"quarantined: {reason}"
            self.stats.reasons[key] = self.stats.reasons.get(key, 0) + 1
        self._quarantine.append((event, reason))
        if count <= 10 or count % 100 == 0:
            logger.error(
                "celery-bgp: quarantined a command event the store cannot hold (%d so far; "
                "the rest of its batch is written): %s; event: %.500r",
                count, detail, event,
            )


_live_recorders: weakref.WeakSet[EventRecorder] = weakref.WeakSet()


def flush_all(timeout: float = 10.0) -> None:
    """Flush every recorder of this process (worker shutdown, interpreter exit)."""
    for recorder in list(_live_recorders):
        recorder.flush(timeout)


def _after_fork() -> None:
    """A forked child (a prefork pool process) starts with an empty queue and no writer:
    the parent's thread did not come along. Here once per fork instead of a ``getpid``
    on every event."""
    for recorder in list(_live_recorders):
        recorder._reset()


atexit.register(flush_all, 5.0)
os.register_at_fork(after_in_child=_after_fork)
