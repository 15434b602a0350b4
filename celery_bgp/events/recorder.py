"""Writes events for the signal receivers without ever failing or slowing the task.

In ``background`` mode (the default) an event is queued and a writer thread sends
batches with :meth:`EventRepository.add_many`, so a dispatch or a task never waits
for a round trip and bursts share one (the writer lingers ``linger`` seconds after
the first event of a batch). A failing backend is retried for a while
(events catch up when it returns), then the batch is dropped, logged and counted.
``sync`` mode writes inline (still never raising), for tests and for processes that
must not keep a thread.
"""
from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from .model import CommandEvent
from .repository import EventRepository

__all__ = ["EventRecorder", "RecorderStats"]

logger = logging.getLogger("celery_bgp.events")

MODES = ("background", "sync")
#: Seconds without events after which the writer tells the repository it is idle.
IDLE_AFTER = 1.0


@dataclass
class RecorderStats:
    """Counters since the recorder started in this process."""

    recorded: int = 0
    written: int = 0
    dropped: int = 0
    write_errors: int = 0


class EventRecorder:
    """Queue-and-batch writer in front of an :class:`EventRepository`."""

    def __init__(
        self,
        repository: Callable[[], EventRepository],
        mode: str = "background",
        *,
        batch_size: int = 500,
        linger: float = 0.01,
        max_pending: int = 100_000,
        retry_for: float = 30.0,
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
        self.stats = RecorderStats()
        self._reset()
        _live_recorders.add(self)

    def _reset(self) -> None:
        """(Re)create per-process state: at start and in a forked child."""
        self._pid = os.getpid()
        self._queue: queue.SimpleQueue[CommandEvent | None] = queue.SimpleQueue()
        self._pending = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stats_lock = threading.Lock()

    @property
    def repository(self) -> EventRepository:
        """The repository, built on first use in each process."""
        if self._repository is None:
            self._repository = self._repository_factory()
        return self._repository

    def record(self, event: CommandEvent) -> None:
        """Store ``event`` eventually; never raises."""
        if self._pid != os.getpid():
            self._reset()
        if self.mode == "sync":
            with self._stats_lock:
                self.stats.recorded += 1
            self._write([event], retry=False)
            return
        with self._cond:
            self.stats.recorded += 1
            if self._pending >= self.max_pending:
                self._count_dropped(1, "the write queue is full")
                return
            self._pending += 1
        self._queue.put(event)
        if self._thread is None or not self._thread.is_alive():
            self._start()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until queued events are written (or dropped); False on timeout."""
        if self._pid != os.getpid():
            return True
        deadline = time.monotonic() + timeout
        with self._cond:
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
            self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=IDLE_AFTER)
            except queue.Empty:
                self._idle()
                first = self._queue.get()
            batch = [first]
            # Linger a few ms so a burst (or PROCESSING + PROCESSED of a fast task)
            # shares one round trip; the first event's wait bounds the added latency.
            deadline = time.monotonic() + self.linger
            while len(batch) < self.batch_size:
                try:
                    remaining = deadline - time.monotonic()
                    if remaining > 0:
                        batch.append(self._queue.get(timeout=remaining))
                    else:
                        batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._write([e for e in batch if e is not None], retry=True)
            finally:
                with self._cond:
                    self._pending -= len(batch)
                    self._cond.notify_all()

    def _idle(self) -> None:
        try:
            self.repository.on_idle()
        except Exception:
            logger.debug("celery-bgp: event repository idle hook failed", exc_info=True)

    def _write(self, batch: list[CommandEvent], retry: bool) -> None:
        if not batch:
            return
        deadline = time.monotonic() + (self.retry_for if retry else 0)
        delay = 0.05
        while True:
            try:
                self.repository.add_many(batch)
            except Exception as exc:  # never let the store break a task
                with self._stats_lock:
                    self.stats.write_errors += 1
                if time.monotonic() + delay > deadline:
                    self._count_dropped(len(batch), f"{type(exc).__name__}: {exc}")
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
                return

    def _count_dropped(self, count: int, why: str) -> None:
        with self._stats_lock:
            before = self.stats.dropped
            self.stats.dropped += count
        if before == 0 or before // 1000 != self.stats.dropped // 1000:
            logger.error(
                "celery-bgp: dropped %d command event(s) (%d so far): %s",
                count, self.stats.dropped, why,
            )


_live_recorders: weakref.WeakSet[EventRecorder] = weakref.WeakSet()


def flush_all(timeout: float = 10.0) -> None:
    """Flush every recorder of this process (worker shutdown, interpreter exit)."""
    for recorder in list(_live_recorders):
        recorder.flush(timeout)


atexit.register(flush_all, 5.0)
