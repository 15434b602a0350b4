"""A small mediator: requests answered by prioritized handlers, and events broadcast.

HiveMind routes state election through mediator requests (handlers with priorities
may replace the elected state) and state changes through mediator events (every
handler sees them). This is that, in-process and synchronous.
"""
from __future__ import annotations

import bisect
import itertools
import logging
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Mediator"]

logger = logging.getLogger("celery_bgp.jobs")


class Mediator:
    """Request handlers (ordered by priority, lowest first) and event handlers."""

    def __init__(self) -> None:
        self._requests: dict[str, list[tuple[int, int, Callable[..., Any]]]] = {}
        self._events: dict[str, list[Callable[..., Any]]] = {}
        self._counter = itertools.count()
        self._lock = threading.Lock()

    def handle(self, request: str, handler: Callable[..., Any], priority: int = 100) -> None:
        """Add a handler for ``request``; priority 0 runs first, ties in added order."""
        with self._lock:
            bisect.insort(self._requests.setdefault(request, []),
                          (priority, next(self._counter), handler))

    def subscribe(self, event: str, handler: Callable[..., Any]) -> None:
        """Add a handler for ``event``."""
        with self._lock:
            self._events.setdefault(event, []).append(handler)

    def handlers(self, request: str) -> list[Callable[..., Any]]:
        """Handlers of ``request`` in the order they run."""
        return [h for _, _, h in self._requests.get(request, ())]

    def publish(self, event: str, payload: Any) -> None:
        """Call every handler of ``event``; one failing handler does not stop the rest."""
        for handler in list(self._events.get(event, ())):
            try:
                handler(payload)
            except Exception:
                logger.exception("celery-bgp: %s handler %r failed", event, handler)
