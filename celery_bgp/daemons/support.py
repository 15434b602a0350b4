"""The daemons side of ``BackgroundProcessing``: ``bgp.daemon(...)`` and ``bgp.daemons``."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .client import Daemons
from .model import Policy, Scope

__all__ = ["DaemonsSupport"]


class DaemonsSupport:
    """Mixin of :class:`~celery_bgp.BackgroundProcessing`."""

    _daemons: Daemons | None = None

    @property
    def daemons(self) -> Daemons:
        """Declared daemons and the query API (``all``, ``get``, ``logs``, ``stop`` ...)."""
        if self._daemons is None:
            self._daemons = Daemons(self)  # type: ignore[arg-type]
        return self._daemons

    def daemon(self, name: str, fn: Callable[..., Any] | str | None = None, *,
               restart: Policy | str = Policy.UNLESS_STOPPED,
               scope: Scope | str = Scope.CLUSTER, queues: Iterable[str] = (),
               priority: int = 0, backoff: tuple[float, float] = (1.0, 60.0)) -> Any:
        """Declare a daemon: ``fn(context)`` kept running by the workers.

        ``scope="cluster"`` runs one copy across all workers, ``"worker"`` one per worker
        that consumes one of ``queues`` (any worker when empty). ``restart`` is ``none``,
        ``on-failure``, ``unless-stopped`` (default) or ``always``; restarts back off from
        ``backoff[0]`` doubling to ``backoff[1]`` seconds. Without ``fn``, a decorator.
        """
        from .runner import DaemonStep

        steps = self.app.steps["worker"]  # type: ignore[attr-defined]
        if DaemonStep not in steps:
            steps.add(DaemonStep)
        return self.daemons.declare(name, fn, restart=restart, scope=scope, queues=queues,
                                    priority=priority, backoff=backoff)

    def swarm(self, name: str, **profile: Any) -> Any:
        """Declare a swarm (a named worker profile); see :mod:`celery_bgp.swarms`."""
        from ..swarms import declare

        return declare(self, name, **profile)
