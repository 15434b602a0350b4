"""In-process event repository for development, eager mode and tests.

Events live in this process only: a prefork worker's children each have their own,
so use Redis, a Django cache or the database once a real worker is involved.
``memory://name`` URLs with the same name share one store within a process.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from .model import CommandEvent, newest_first
from .repository import DEFAULT_EXPIRY, EventRepository, parse_expiry, url_options

__all__ = ["MemoryEventRepository"]

_SWEEP_EVERY = 1024


class MemoryEventRepository(EventRepository):
    """A lock-protected dict of event lists with sliding expiry."""

    _named: dict[str, MemoryEventRepository] = {}
    _named_lock = threading.Lock()

    def __init__(self, expiry: float | None = DEFAULT_EXPIRY, clock=time.monotonic) -> None:
        self.expiry = expiry
        self._clock = clock
        self._lock = threading.Lock()
        self._events: dict[str, tuple[list[CommandEvent], float | None]] = {}
        self._adds = 0

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemoryEventRepository:
        """``memory://`` (the process-wide default store) or ``memory://name``."""
        opts = url_options(url, {"expiry": options.get("expiry", DEFAULT_EXPIRY)})
        name = urlsplit(url).netloc or "default"
        with cls._named_lock:
            repo = cls._named.get(name)
            if repo is None:
                repo = cls._named[name] = cls(expiry=parse_expiry(opts["expiry"]))
            return repo

    def add_many(self, events: Sequence[CommandEvent]) -> None:
        now = self._clock()
        deadline = None if self.expiry is None else now + self.expiry
        with self._lock:
            for event in events:
                stored, expires = self._events.get(event.command_id, (None, None))
                if stored is None or (expires is not None and expires <= now):
                    stored = []
                stored.append(event)
                self._events[event.command_id] = (stored, deadline)
            self._adds += len(events)
            if self._adds >= _SWEEP_EVERY:
                self._adds = 0
                self._sweep(now)

    def all(self, command_id: str) -> list[CommandEvent]:
        with self._lock:
            stored, expires = self._events.get(command_id, ([], None))
            if expires is not None and expires <= self._clock():
                del self._events[command_id]
                return []
            return newest_first(list(stored))

    def clear(self) -> None:
        """Forget every event (tests)."""
        with self._lock:
            self._events.clear()

    def __len__(self) -> int:
        """Number of commands with live events."""
        with self._lock:
            self._sweep(self._clock())
            return len(self._events)

    def _sweep(self, now: float) -> None:
        dead = [k for k, (_, exp) in self._events.items() if exp is not None and exp <= now]
        for key in dead:
            del self._events[key]
