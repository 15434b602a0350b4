"""The worker bootstep that keeps daemons alive: one supervisor thread per daemon.

A ``cluster`` daemon's supervisor runs it only while it holds the daemon's lease (its
row in the job store: taken when free or expired, renewed every ``timeout / 5`` s);
every worker's supervisor polls for the lease, so when a worker dies (even by
SIGKILL) another one takes the daemon over once the lease expires: within
``bgp_job_lock_timeout`` plus one poll. A supervisor that cannot renew for
``0.7 x timeout`` fires the daemon's stop token first, so two copies never run at
once as long as the daemon honours its token. A ``worker`` daemon runs once in every
worker that consumes one of its queues, with a row of its own per worker.

Daemons run as threads of the worker's main process (started after the pool forked),
so Celery's pool, consumer and shutdown work as before; the worker's warm shutdown
fires every stop token and waits up to :data:`STOP_GRACE` seconds.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from celery import bootsteps

from ..exceptions import ImproperlyConfigured
from .model import Policy
from .supervisor import GIVE_UP, STOP_GRACE, Supervisor

if TYPE_CHECKING:
    from .client import Daemons

__all__ = ["STOP_GRACE", "DaemonStep", "Runner", "Supervisor"]

logger = logging.getLogger("celery_bgp.daemons")


class Runner:
    """The supervisors of one worker, started by priority and stopped in reverse."""

    def __init__(self, daemons: Daemons, worker: str, queues: set[str]) -> None:
        self.daemons = daemons
        specs = sorted(daemons.specs.values(), key=lambda s: (s.priority, s.name))
        self.supervisors = [Supervisor(daemons, s, worker) for s in specs
                            if not s.queues or queues & set(s.queues)]

        self._stopped = threading.Event()
        self._watcher = threading.Thread(target=self._watchdog, name="bgp-daemons-watchdog",
                                         daemon=True)

    def start(self) -> None:
        for supervisor in self.supervisors:
            if supervisor.spec.restart is Policy.ALWAYS:
                self._always_on(supervisor)
        for supervisor in self.supervisors:
            supervisor.thread.start()
        if self.supervisors:
            self._watcher.start()

    def _watchdog(self) -> None:
        """Fire the token of a daemon whose supervisor has not renewed its lease for
        ``GIVE_UP x timeout`` (blocked on a store that does not answer), before the lease
        can expire and another worker take the daemon over."""
        while not self._stopped.wait(0.2):
            for supervisor in self.supervisors:
                token = supervisor.token
                late = time.monotonic() - supervisor._renewed
                if token is not None and not token.cancelled and \
                        late > GIVE_UP * supervisor.timeout:
                    logger.warning("celery-bgp: daemon %s: lease not renewed for %.1f s; "
                                   "stopping it before it can expire", supervisor.spec.name,
                                   late)
                    token.cancel()

    def _always_on(self, supervisor: Supervisor) -> None:
        """``always``: a worker that starts starts the daemon even if it was stopped."""
        try:
            row = self.daemons.store.get(supervisor.control_id)
            if row is not None and row.desired != "running":
                self.daemons.store.steer(supervisor.control_id, "running", True)
        except Exception:
            logger.warning("celery-bgp: daemon %s: store unavailable at start",
                           supervisor.spec.name, exc_info=True)

    def stop(self) -> None:
        """Stop the daemons, highest ``priority`` first (each level within the grace)."""
        levels = sorted({s.spec.priority for s in self.supervisors}, reverse=True)
        for level in levels:
            group = [s for s in self.supervisors if s.spec.priority == level]
            for supervisor in group:
                supervisor.shutdown.set()
                supervisor._wake.set()
            deadline = time.monotonic() + STOP_GRACE + 2
            for supervisor in group:
                supervisor.thread.join(max(0.1, deadline - time.monotonic()))
        self._stopped.set()


class DaemonStep(bootsteps.StartStopStep):
    """Worker bootstep: run this app's daemons beside the pool (after it forked)."""

    name = "celery-bgp daemons"
    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.runner: Runner | None = None

    def start(self, worker: Any) -> None:
        bgp = getattr(worker.app, "bgp", None)
        daemons = getattr(bgp, "_daemons", None)
        if daemons is None or not daemons.specs:
            return
        if not bgp.has_jobs:
            raise ImproperlyConfigured(
                f"daemons {', '.join(sorted(daemons.specs))} need a job store to keep their "
                "leases and status: set job_store= (bgp_job_store)")
        queues = set(worker.app.amqp.queues.consume_from or worker.app.amqp.queues)
        for spec in daemons.specs.values():
            daemons.resolve(spec.fn)  # a worker refuses to start on a refused callable
        self.runner = Runner(daemons, worker.hostname, queues)
        self.runner.start()

    def stop(self, worker: Any) -> None:
        if self.runner is not None:
            self.runner.stop()
            self.runner = None

    terminate = stop
    shutdown = stop
