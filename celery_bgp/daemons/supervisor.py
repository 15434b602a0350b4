"""One daemon on one worker: take its lease, run it, watch it, restart it per its policy.

See :mod:`.runner` for the whole picture (leases, takeover, shutdown).
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import os
import threading
import time
import traceback
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..commands import utcnow
from ..jobs.model import LogRecord
from .context import DaemonContext, StopToken
from .model import DaemonRecord, DaemonSpec, Scope, Status, row_id

if TYPE_CHECKING:
    from .client import Daemons

__all__ = ["GIVE_UP", "STOP_GRACE", "Supervisor"]

logger = logging.getLogger("celery_bgp.daemons")

#: Seconds a stopping worker waits for its daemons to return.
STOP_GRACE = 10.0
#: A holder that could not renew for this share of the timeout stops its daemon.
GIVE_UP = 0.7
#: A worker daemon's copy whose lease expired this many timeouts ago is forgotten ...
PRUNE_AFTER = 10
#: ... by a check every this many timeouts.
PRUNE_EVERY = 2


class Supervisor:
    """Runs one daemon on this worker: lease, start, watch, restart per policy."""

    def __init__(self, daemons: Daemons, spec: DaemonSpec, worker: str) -> None:
        self.daemons, self.spec, self.worker = daemons, spec, worker
        self.store = daemons.store
        self.holder = f"{worker}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        env = daemons.environment
        self.control_id = row_id(env, spec.name)
        self.run_id = (self.control_id if spec.scope is Scope.CLUSTER
                       else row_id(env, spec.name, worker))
        self.timeout = float(daemons.bgp.settings.job_lock_timeout)
        self.beat = self.timeout / 5
        self.poll = min(1.0, self.timeout / 10)
        self.shutdown = threading.Event()
        self._wake = threading.Event()
        self._failures = 0
        self._ensured = self._holding = False
        self._prune_at = 0.0
        self._generation: int | None = None
        self._renewed = time.monotonic()
        #: The running daemon's token (for :meth:`Runner._watchdog`).
        self.token: StopToken | None = None
        self.thread = threading.Thread(target=self._main, name=f"bgp-daemon-{spec.name}",
                                       daemon=True)

    # -- the supervisor's loop -----------------------------------------------------------

    def _main(self) -> None:
        try:
            while not self.shutdown.is_set():
                try:
                    self._round()
                except Exception as exc:
                    logger.warning("celery-bgp: daemon %s: %r; trying again", self.spec.name,
                                   exc, exc_info=not isinstance(exc, self.store.unavailable))
                    self._close()
                    self.shutdown.wait(self.poll)
        finally:
            self._close()

    def _round(self) -> None:
        env, spec = self.daemons.environment, self.spec
        if not self._ensured:
            self.store.ensure(DaemonRecord(self.control_id, spec.name, env, spec.scope.value))
            if self.run_id != self.control_id:
                self.store.ensure(DaemonRecord(self.run_id, spec.name, env, spec.scope.value,
                                               instance=self.worker))
            self._ensured = True
        before = None if self._holding else self.store.get(self.run_id)
        if before is None and not self._holding:
            self._ensured = False  # pruned by another worker (see _prune): make it again
            return
        if self.run_id != self.control_id and time.monotonic() >= self._prune_at:
            self._prune()
        row = self.store.acquire(self.run_id, self.holder, self.timeout)
        self._holding = row is not None
        if row is None:
            self.shutdown.wait(self.poll)  # another worker runs it
            return
        self._renewed = time.monotonic()
        if before is not None and before.lease_holder not in (None, self.holder):
            self._log(logging.WARNING, f"taken over by {self.worker} from "
                                       f"{before.worker or before.lease_holder}")
        control = self._control(row)
        if self._generation != control.generation:
            self._generation, self._failures = control.generation, 0
        if control.desired != "running" or row.ended == control.generation:
            # Stopped by an operator, or ended for good (stopped or faulted, kept as is).
            changes: dict[str, Any] = {}
            if row.status in (Status.STARTING.value, Status.RUNNING.value) or (
                    control.desired != "running" and row.status != Status.STOPPED.value):
                changes.update(status=Status.STOPPED.value, since=utcnow())
            if row.worker != self.worker:
                changes["worker"] = self.worker
            if changes:
                self._set(**changes)
            self._idle(self.poll)
            return
        self._run_once(control.generation)

    def _prune(self) -> None:
        """Forget this worker daemon's copies on workers that are gone: released (a
        warm shutdown) or expired for ``PRUNE_AFTER x timeout`` (killed, or a replaced
        container with another hostname), so operators see only live copies."""
        self._prune_at = time.monotonic() + PRUNE_EVERY * self.timeout
        horizon = utcnow() - timedelta(seconds=PRUNE_AFTER * self.timeout)
        gone = [r.id for r in self.store.search(self.daemons.environment, self.spec.name)
                if r.instance and r.id != self.run_id
                and (r.lease_expires is None or r.lease_expires < horizon)]
        if gone:
            self.store.delete(gone)
            logger.info("celery-bgp: daemon %s: forgot the copies of %d gone workers",
                        self.spec.name, len(gone))

    def _control(self, run_row: DaemonRecord) -> DaemonRecord:
        if self.run_id == self.control_id:
            return run_row
        return self.store.get(self.control_id) or run_row

    def _renew(self) -> DaemonRecord | bool | None:
        """The fresh control row; None if the lease is lost; False if the store is away."""
        try:
            row = self.store.renew(self.run_id, self.holder, self.timeout)
            if row is None:
                return None
            self._renewed = time.monotonic()
            return self._control(row)
        except Exception as exc:
            logger.warning("celery-bgp: daemon %s: renewing its lease failed: %r",
                           self.spec.name, exc)
            self._close()
            if time.monotonic() - self._renewed > GIVE_UP * self.timeout:
                return None
            return False

    def _check(self) -> DaemonRecord | bool | None:
        """As :meth:`_renew`, renewing only when due (else one read): operators' stops
        and starts are seen within :attr:`poll`, the lease renewed every :attr:`beat`."""
        if time.monotonic() - self._renewed >= self.beat:
            return self._renew()
        try:
            row = self.store.get(self.run_id)
        except Exception as exc:
            logger.warning("celery-bgp: daemon %s: reading its row failed: %r",
                           self.spec.name, exc)
            self._close()
            return False
        if row is None or row.lease_holder != self.holder:
            return None
        return self._control(row)

    def _idle(self, seconds: float) -> None:
        """Wait, keeping the lease (a stopped cluster daemon stays with its holder)."""
        self.shutdown.wait(seconds)
        if self.shutdown.is_set():
            self._release()
        elif time.monotonic() - self._renewed >= self.beat:
            self._renew()

    # -- one run ----------------------------------------------------------------------------

    def _run_once(self, generation: int) -> None:
        spec = self.spec
        self._set(status=Status.STARTING.value, since=utcnow(), worker=self.worker)
        token = self.token = StopToken()
        outcome: dict[str, Any] = {}
        ctx = DaemonContext(self.daemons, spec, self.run_id, self.worker, token)
        self._wake.clear()
        thread = threading.Thread(target=self._call, args=(ctx, outcome),
                                  name=f"bgp-daemon-{spec.name}-run", daemon=True)
        started = time.monotonic()
        thread.start()
        self._set(status=Status.RUNNING.value, since=utcnow())
        reason = self._watch(thread, generation)
        if reason is not None:
            token.cancel()
            self._log(logging.INFO, f"stopping on {self.worker}: {reason}")
            if not self._drain(thread, reason):
                self.token = None
                return
        self.token = None
        self._ended(reason, outcome, generation, time.monotonic() - started)

    def _watch(self, thread: threading.Thread, generation: int) -> str | None:
        """Until the daemon ends (None) or must stop (the reason)."""
        while thread.is_alive():
            self._wake.wait(self.poll)
            if not thread.is_alive():
                return None
            if self.shutdown.is_set():
                return "worker shutdown"
            control = self._check()
            if control is None:
                return "lease lost"
            if control is False:
                continue
            if control.desired != "running":
                return "stopped by an operator"
            if control.generation != generation:
                return "restart requested"
        return None

    def _drain(self, thread: threading.Thread, reason: str) -> bool:
        """Wait for a stopping daemon; False if this worker must not write its row."""
        if reason == "lease lost":
            thread.join(self.timeout)
            self._log(logging.WARNING, f"lease lost on {self.worker}; daemon stopped")
            return False
        deadline = time.monotonic() + STOP_GRACE
        while thread.is_alive():
            thread.join(self.poll)
            if reason == "worker shutdown":
                if time.monotonic() > deadline:
                    logger.warning("celery-bgp: daemon %s did not stop within %.0f s",
                                   self.spec.name, STOP_GRACE)
                    break
            elif self._check() is None:
                return False
        if reason == "worker shutdown":
            if not thread.is_alive():  # else its lease expires: never two copies at once
                self._release(status=Status.STOPPED.value, since=utcnow())
            return False
        return True

    def _ended(self, reason: str | None, outcome: dict[str, Any], generation: int,
               ran_for: float) -> None:
        spec, now = self.spec, utcnow()
        error = outcome.get("error")
        row = self.store.get(self.run_id)
        restarts = row.restarts if row else 0
        if reason == "stopped by an operator":
            self._set(status=Status.STOPPED.value, since=now)
            return
        if reason == "restart requested":
            self._set(status=Status.STOPPED.value, since=now, restarts=restarts + 1)
            return
        failed = error is not None
        status = Status.FAULTED.value if failed else Status.STOPPED.value
        last_error = error if failed else (row.last_error if row else None)
        self._log(logging.ERROR if failed else logging.INFO,
                  f"{'raised' if failed else 'returned'} after {ran_for:.1f} s on {self.worker}",
                  error)
        if not spec.restart.restarts_after(failed):
            self._set(status=status, since=now, last_error=last_error, ended=generation)
            return
        if ran_for >= spec.backoff[1]:
            self._failures = 0  # it ran well for a while: start the back-off over
        self._failures += 1
        delay = spec.backoff_delay(self._failures)
        self._set(status=status, since=now, last_error=last_error, restarts=restarts + 1)
        self._log(logging.INFO, f"restarting in {delay:.1f} s (policy {spec.restart.value})")
        self._backoff(delay, generation)

    def _backoff(self, delay: float, generation: int) -> None:
        """Wait ``delay`` keeping the lease; an operator's stop/start ends the wait."""
        deadline = time.monotonic() + delay
        while not self.shutdown.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.shutdown.wait(min(left, self.poll))
            control = self._check()
            if control is None:
                return
            if control and (control.desired != "running" or control.generation != generation):
                return
        self._release()

    def _call(self, ctx: DaemonContext, outcome: dict[str, Any]) -> None:
        try:
            invocation = self.daemons.resolve(self.spec.fn)
            target = invocation.target
            args: list[Any] = [ctx]
            if invocation.owner is not None:
                args.insert(0, self.daemons.bgp.jobs.activator(invocation.owner))
            result = target(*args)
            if inspect.isawaitable(result):
                asyncio.run(_awaited(result))
        except BaseException as exc:  # the policy decides, not the thread
            outcome["error"] = "".join(traceback.format_exception(exc)).strip()[-4000:]
            outcome["exc"] = exc
        finally:
            self._close()
            self._wake.set()

    # -- writes ----------------------------------------------------------------------------

    def _set(self, **changes: Any) -> None:
        self.store.update(self.run_id, changes, holder=self.holder)

    def _release(self, **changes: Any) -> None:
        self._holding = False
        try:
            self.store.update(self.run_id, {**changes, "lease_holder": None,
                                            "lease_expires": None}, holder=self.holder)
        except Exception:
            logger.warning("celery-bgp: daemon %s: releasing its lease failed",
                           self.spec.name, exc_info=True)

    def _log(self, level: int, message: str, exception: str | None = None) -> None:
        logger.log(level, "celery-bgp: daemon %s: %s", self.spec.name, message)
        try:
            self.store.add_log(self.daemons.environment, self.spec.name, self.worker,
                               LogRecord(level, message, utcnow(), exception))
        except Exception:
            logger.debug("celery-bgp: daemon log not stored", exc_info=True)

    def _close(self) -> None:
        try:
            self.store.on_idle()
        except Exception:
            logger.debug("celery-bgp: closing the daemon store connection failed",
                         exc_info=True)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable
