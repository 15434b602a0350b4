"""Command events: model, repositories, and ``bgp.events``, the query facade."""
from __future__ import annotations

import time

from .model import CommandEvent, ErrorInfo, EventStatus, newest_first
from .recorder import EventRecorder, RecorderStats
from .repository import (
    DEFAULT_EXPIRY,
    EventRepository,
    repository_from_url,
    resolve_repository,
)

__all__ = [
    "DEFAULT_EXPIRY",
    "CommandEvent",
    "ErrorInfo",
    "EventRecorder",
    "EventRepository",
    "EventStatus",
    "Events",
    "RecorderStats",
    "newest_first",
    "repository_from_url",
    "resolve_repository",
]


class Events:
    """``bgp.events``: read a command's events; reads see this process's own writes."""

    def __init__(self, recorder: EventRecorder) -> None:
        self._recorder = recorder

    @property
    def repository(self) -> EventRepository:
        """The configured :class:`EventRepository`."""
        return self._recorder.repository

    @property
    def stats(self) -> RecorderStats:
        """Recorded / written / dropped / quarantined counters of this process, and why."""
        return self._recorder.stats

    def quarantined(self) -> list[tuple[CommandEvent, str]]:
        """The last events this process refused alone (malformed, or refused by the
        store), each with the reason; the rest of their batches was written."""
        return self._recorder.quarantined()

    def latest(self, command_id: str) -> CommandEvent | None:
        """The newest event of a command, or ``None`` if it has none (or they expired)."""
        self._recorder.flush()
        return self.repository.latest(command_id)

    def all(self, command_id: str) -> list[CommandEvent]:
        """Every event of a command, newest first (ties: later life stage first)."""
        self._recorder.flush()
        return self.repository.all(command_id)

    def add(self, event: CommandEvent) -> None:
        """Store an event now; unlike the signal receivers, errors propagate."""
        self.repository.add(event)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait for events recorded by this process to be written."""
        return self._recorder.flush(timeout)

    def wait_for(
        self,
        command_id: str,
        statuses: tuple[EventStatus, ...] = (
            EventStatus.PROCESSED,
            EventStatus.ERROR,
            EventStatus.CANCELLED,
        ),
        timeout: float = 30.0,
        interval: float = 0.05,
    ) -> CommandEvent:
        """Poll until the latest event has one of ``statuses``; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.latest(command_id)
            if event is not None and event.status in statuses:
                return event
            if time.monotonic() >= deadline:
                seen = event.status.value if event else "no event"
                raise TimeoutError(
                    f"command {command_id} did not reach {[s.value for s in statuses]} "
                    f"within {timeout}s (latest: {seen})"
                )
            time.sleep(interval)
