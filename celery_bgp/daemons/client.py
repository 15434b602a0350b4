"""``bgp.daemons``: declare daemons, and see and steer them (the query API).

Declaring never touches the store (it happens at import time, before Django is
ready); the runner (:mod:`.runner`) writes rows when a worker starts them, and
:meth:`Daemons.stop` / :meth:`~Daemons.start` / :meth:`~Daemons.restart` write what
operators want, which the workers read on their next heartbeat.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import re
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..commands import utcnow
from ..exceptions import ImproperlyConfigured
from ..jobs.invocation import Invocation, callable_name, resolve
from .model import DaemonNotFound, DaemonRecord, DaemonSpec, Policy, Scope, Status, row_id
from .store import DaemonStore, daemon_store_for

if TYPE_CHECKING:
    from ..jobs.model import LogRecord
    from ..processing import BackgroundProcessing

__all__ = ["Daemons"]

_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,200}$")


class Daemons:
    """The daemons of one :class:`~celery_bgp.BackgroundProcessing` (one environment)."""

    def __init__(self, bgp: BackgroundProcessing) -> None:
        self.bgp = bgp
        self.specs: dict[str, DaemonSpec] = {}

    @property
    def environment(self) -> str:
        return self.bgp.name

    @functools.cached_property
    def store(self) -> DaemonStore:
        """The daemon store on the job store's database (opened on first use)."""
        return daemon_store_for(self.bgp.jobs.store)

    # -- declaring ---------------------------------------------------------------------

    def declare(self, name: str, fn: Callable[..., Any] | str | None = None, *,
                restart: Policy | str = Policy.UNLESS_STOPPED,
                scope: Scope | str = Scope.CLUSTER, queues: Iterable[str] = (),
                priority: int = 0, backoff: tuple[float, float] = (1.0, 60.0)) -> Any:
        """Declare daemon ``name`` running ``fn(context)``; without ``fn``, a decorator.

        ``fn`` must be allow-listed like a job's callable (``bgp_job_modules``).
        """
        if fn is None:
            return lambda f: self.declare(name, f, restart=restart, scope=scope, queues=queues,
                                          priority=priority, backoff=backoff) and f
        if not isinstance(name, str) or not _NAME.match(name):
            raise ImproperlyConfigured(
                f"daemon name {name!r} must be 1-200 letters, digits, '_', '-' or '.'")
        if isinstance(queues, str):
            queues = [queues]
        first, cap = (float(v) for v in backoff)
        if not 0 < first <= cap:
            raise ImproperlyConfigured(
                f"backoff {backoff!r} must be (first, cap) with 0 < first <= cap")
        fn_name = callable_name(fn)
        self.resolve(fn_name)  # refused here, not first on a worker
        spec = DaemonSpec(name, fn_name, Policy.parse(restart), Scope.parse(scope),
                          tuple(queues), int(priority), (first, cap))
        if name in self.specs and self.specs[name] != spec:
            raise ImproperlyConfigured(f"daemon {name!r} is already declared differently")
        self.specs[name] = spec
        return spec

    def resolve(self, fn_name: str) -> Invocation:
        """The daemon's callable, if the allow-list lets it run (the job rules)."""
        return resolve(fn_name, self.bgp.settings.job_modules)

    def spec(self, name: str) -> DaemonSpec:
        try:
            return self.specs[name]
        except KeyError:
            known = ", ".join(sorted(self.specs)) or "none"
            raise DaemonNotFound(f"no daemon {name!r} is declared (declared: {known})") from None

    @contextlib.contextmanager
    def running(self, worker: str = "local", queues: Iterable[str] = ("celery",)
                ) -> Iterator[None]:
        """Run the daemons in this process, as a worker would (tests, scripts)."""
        from .runner import Runner

        runner = Runner(self, worker, set(queues))
        runner.start()
        try:
            yield
        finally:
            runner.stop()

    # -- seeing ------------------------------------------------------------------------

    def all(self) -> list[DaemonRecord]:
        """Every daemon (each worker daemon's copies too), as operators see it.

        A declared daemon no worker ran yet is shown stopped; a copy whose worker
        stopped renewing its lease is shown faulted ("worker lost").
        """
        rows = [self._shown(r) for r in self.store.search(self.environment)]
        seen = {r.name for r in rows}
        rows += [self._unstarted(s) for s in self.specs.values() if s.name not in seen]
        copies: dict[str, list[DaemonRecord]] = {}
        for row in rows:
            if row.instance:
                copies.setdefault(row.name, []).append(row)
        return sorted((_summary(r, copies.get(r.name, [])) if not r.instance else r
                       for r in rows), key=lambda r: (r.name, r.instance))

    def get(self, name: str) -> DaemonRecord:
        """The daemon's own row (a worker daemon's copies: :meth:`copies`)."""
        row = self.store.get(row_id(self.environment, name))
        if row is None:
            return self._unstarted(self.spec(name))
        if row.scope == Scope.WORKER.value:
            return _summary(self._shown(row), self.copies(name))
        return self._shown(row)

    def copies(self, name: str) -> list[DaemonRecord]:
        """A worker daemon's per-worker rows (a cluster daemon has none)."""
        return [self._shown(r) for r in self.store.search(self.environment, name) if r.instance]

    def logs(self, name: str, limit: int = 100) -> list[tuple[str | None, LogRecord]]:
        """``(worker, log record)``, newest first."""
        self._known(name)
        return self.store.logs(self.environment, name, limit)

    # -- steering ----------------------------------------------------------------------

    def stop(self, name: str) -> DaemonRecord:
        """Ask the daemon to stop (on every worker); it stays stopped until started."""
        return self._steer(name, "stopped", False)

    def start(self, name: str) -> DaemonRecord:
        """Start a stopped or ended daemon again (faulted ones too, with a fresh back-off)."""
        return self._steer(name, "running", True)

    def restart(self, name: str) -> DaemonRecord:
        """Stop the running copy (copies) and start it again."""
        return self._steer(name, "running", True)

    def _steer(self, name: str, desired: str, new_generation: bool) -> DaemonRecord:
        spec = self._known(name)
        key = row_id(self.environment, name)
        if spec is not None:
            self.store.ensure(self._unstarted(spec))
        row = self.store.steer(key, desired, new_generation)
        if row is None:
            raise DaemonNotFound(f"no daemon {name!r} in environment {self.environment!r}")
        return self._shown(row)

    def _known(self, name: str) -> DaemonSpec | None:
        if name in self.specs:
            return self.specs[name]
        if self.store.get(row_id(self.environment, name)) is None:
            self.spec(name)  # raises DaemonNotFound, naming the declared ones
        return None

    def _unstarted(self, spec: DaemonSpec) -> DaemonRecord:
        return DaemonRecord(row_id(self.environment, spec.name), spec.name, self.environment,
                            spec.scope.value)

    def _shown(self, row: DaemonRecord) -> DaemonRecord:
        if not row.lost(utcnow()):
            return row
        return dataclasses.replace(row, status=Status.FAULTED.value, last_error=(
            f"worker lost: {row.worker or row.lease_holder or '?'} stopped renewing its lease"))


#: A worker daemon's status is its copies' best one, in this order.
_BEST = (Status.RUNNING.value, Status.STARTING.value, Status.FAULTED.value,
         Status.STOPPED.value)


def _summary(control: DaemonRecord, copies: list[DaemonRecord]) -> DaemonRecord:
    """A worker daemon's own row, with its copies' status, workers, restarts and error."""
    if not copies:
        return control
    best = min(copies, key=lambda c: _BEST.index(c.status) if c.status in _BEST else 9)
    running = [c.instance for c in copies if c.status == Status.RUNNING.value]
    errors = [c for c in copies if c.last_error]
    return dataclasses.replace(
        control, status=best.status, since=best.since,
        worker=f"{len(running)} of {len(copies)} workers",
        restarts=sum(c.restarts for c in copies),
        last_error=max(errors, key=lambda c: c.since or c.modified or utcnow()).last_error
        if errors else None)
