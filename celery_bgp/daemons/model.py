"""What a daemon is: its declaration (:class:`DaemonSpec`) and its row (:class:`DaemonRecord`).

One row per daemon holds what operators steer (``desired``, ``generation``) and, for a
``cluster`` daemon, where and how it runs (lease, status, restarts, error, state). A
``worker`` daemon also has one row per worker that runs it (``instance`` = the worker's
hostname), so each copy shows its own status.
"""
from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..exceptions import BGPError, ImproperlyConfigured

__all__ = ["DaemonNotFound", "DaemonRecord", "DaemonSpec", "Policy", "Scope", "Status",
           "row_id"]


class DaemonNotFound(BGPError, LookupError):
    """No daemon of that name is declared (or stored) in this environment."""


class Status(str, enum.Enum):
    """HiveMind's daemon statuses."""

    STARTING = "starting"
    RUNNING = "running"
    STOPPED = "stopped"
    FAULTED = "faulted"


class Policy(str, enum.Enum):
    """When a daemon that ended is started again (Docker's restart policies).

    - ``none``: never; it stays stopped (returned) or faulted (raised).
    - ``on-failure``: after it raised; a daemon that returns stays stopped.
    - ``unless-stopped``: after it returned or raised, until an operator stops it; the
      stop holds across worker restarts.
    - ``always``: as ``unless-stopped``, and a worker that starts starts it again even
      if an operator stopped it.
    """

    NONE = "none"
    ON_FAILURE = "on-failure"
    UNLESS_STOPPED = "unless-stopped"
    ALWAYS = "always"

    @classmethod
    def parse(cls, value: Policy | str) -> Policy:
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(p.value for p in cls)
            raise ImproperlyConfigured(
                f"unknown restart policy {value!r}: use one of {known}") from None

    def restarts_after(self, failed: bool) -> bool:
        """True if a daemon that ended (raised when ``failed``) is started again."""
        if self is Policy.NONE:
            return False
        return failed or self is not Policy.ON_FAILURE


class Scope(str, enum.Enum):
    """``cluster``: one copy across all workers (a lease); ``worker``: one per worker."""

    CLUSTER = "cluster"
    WORKER = "worker"

    @classmethod
    def parse(cls, value: Scope | str) -> Scope:
        try:
            return cls(value)
        except ValueError:
            raise ImproperlyConfigured(
                f"unknown daemon scope {value!r}: use 'cluster' or 'worker'") from None


@dataclasses.dataclass(frozen=True)
class DaemonSpec:
    """A declared daemon: ``fn`` is the allow-listed ``"module:function"`` it runs."""

    name: str
    fn: str
    restart: Policy = Policy.UNLESS_STOPPED
    scope: Scope = Scope.CLUSTER
    #: A worker runs the daemon only if it consumes one of these queues (empty: any).
    queues: tuple[str, ...] = ()
    #: Lower starts first and stops last on a worker (HiveMind's start/stop priority).
    priority: int = 0
    #: Back-off before a restart: first delay and cap, seconds (doubles each time).
    backoff: tuple[float, float] = (1.0, 60.0)

    def backoff_delay(self, failures: int) -> float:
        """Seconds to wait before restart number ``failures`` (1, 2 ...) in a row."""
        first, cap = self.backoff
        return min(cap, first * 2 ** max(0, failures - 1))


def row_id(environment: str, name: str, instance: str = "") -> str:
    """The stored id of a daemon's row (``instance``: a worker daemon's worker)."""
    return f"{environment}:{name}@{instance}" if instance else f"{environment}:{name}"


@dataclasses.dataclass
class DaemonRecord:
    """A daemon's stored row (see the module docstring)."""

    id: str
    name: str
    environment: str
    scope: str
    instance: str = ""
    status: str = Status.STOPPED.value
    desired: str = "running"
    generation: int = 0
    #: ``generation`` at which it ended for good under its policy (None: not ended).
    ended: int | None = None
    worker: str | None = None
    lease_holder: str | None = None
    lease_expires: datetime | None = None
    since: datetime | None = None
    restarts: int = 0
    last_error: str | None = None
    state: Any = None
    properties: dict[str, Any] = dataclasses.field(default_factory=dict)
    modified: datetime | None = None

    def lost(self, now: datetime) -> bool:
        """True if it says it runs but its worker stopped renewing the lease."""
        return (self.status in (Status.STARTING.value, Status.RUNNING.value)
                and (self.lease_expires is None or self.lease_expires < now))

    def shown_status(self, now: datetime) -> str:
        """The status an operator sees: a copy whose worker died shows ``faulted``."""
        return Status.FAULTED.value if self.lost(now) else self.status


#: What :meth:`DaemonStore.update` may change.
FIELDS = tuple(f.name for f in dataclasses.fields(DaemonRecord))
DaemonCallable = Callable[..., Any]
