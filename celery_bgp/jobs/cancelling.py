"""Cancelling a running job promptly, through Celery's control channel.

:meth:`Jobs.cancel <celery_bgp.jobs.client.Jobs.cancel>` records the request in the
store, then broadcasts the ``bgp_cancel`` remote-control command (the pidbox, like
``revoke``). The worker whose pool runs the job, in its main process:

- prefork: sends :data:`WAKE_SIGNAL` to the child that runs it. The child's handler
  (installed at ``worker_process_init``) wakes its heartbeat thread, which asks the
  store about each job the child runs and fires the token of those with a cancel
  request. The child may have moved on to another job when the signal lands: that
  one's request is not set, so nothing happens to it.
- threads, gevent, eventlet (jobs run in the main process): wakes the heartbeat
  threads directly.
- ``terminate=True``: kills the child (Celery's ``Request.terminate``, SIGTERM), then
  records Cancelled for the job (the ``task_revoked`` receiver below).

The heartbeat (every ``job_lock_timeout / 3`` s) still checks the cancel request: it
is the fallback when the message is lost, or on the solo pool, whose worker reads no
control message while a task runs. Recovery cancels, instead of running it again, a
job whose lock expired after a cancel request (:mod:`.monitor`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal as _signal
import threading
from typing import TYPE_CHECKING, Any

from celery import signals
from celery.worker import state as worker_state
from celery.worker.control import control_command, ok

from .heartbeats import wake_all
from .states import Cancelled
from .store import StateConflict

if TYPE_CHECKING:
    from ..processing import BackgroundProcessing
    from .client import Jobs
    from .machine import StateChange

__all__ = ["CONTROL_COMMAND", "WAKE_SIGNAL", "CancelResult", "connect", "send_cancel"]

logger = logging.getLogger("celery_bgp.jobs")

#: The remote-control command a cancel broadcasts.
CONTROL_COMMAND = "bgp_cancel"

#: What the worker's main process sends a prefork child to wake its heartbeat thread: a
#: real-time signal neither Celery nor billiard uses (SIGUSR1 is billiard's soft time
#: limit, SIGTERM/SIGINT/SIGHUP/SIGQUIT are Celery's). None where there are no real-time
#: signals (macOS): prefork children then see a cancel at their next heartbeat.
WAKE_SIGNAL: int | None = (int(_signal.SIGRTMIN) + 6 if hasattr(_signal, "SIGRTMIN")
                           else None)


@dataclasses.dataclass(frozen=True)
class CancelResult:
    """What :meth:`Jobs.cancel <celery_bgp.jobs.client.Jobs.cancel>` did.

    ``requested`` is False when the job is Cancelled now (it was waiting), True when
    it runs and was asked to stop: it becomes Cancelled when it does, or keeps its
    final state if it finishes first. ``state`` is the job's state at that moment.
    """

    job_id: str
    state: str
    requested: bool
    terminate: bool = False
    change: StateChange | None = None

    @property
    def done(self) -> bool:
        """True when the job is Cancelled already."""
        return not self.requested

    def __str__(self) -> str:
        if not self.requested:
            return f"job {self.job_id} cancelled"
        how = "terminate requested" if self.terminate else "cancel requested"
        return f"job {self.job_id}: {how} ({self.state} until it stops)"


def send_cancel(bgp: BackgroundProcessing, job_id: str, terminate: bool = False) -> None:
    """Broadcast ``bgp_cancel`` to the workers (no reply awaited; never raises).

    Not ``revoke``: a revoked id stays in every worker's memory for hours, and a job
    keeps its id when it is requeued, so its next message would be discarded.
    """
    try:
        bgp.app.control.broadcast(CONTROL_COMMAND,
                                  arguments={"job_id": job_id, "terminate": bool(terminate)})
    except Exception:
        logger.warning("celery-bgp: could not send the cancel of job %s to the workers; it "
                       "is seen at the job's next heartbeat", job_id, exc_info=True)


# -- the worker's main process ---------------------------------------------------------


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on", "terminate")
    return bool(value)


@control_command(args=[("job_id", str), ("terminate", _flag)],
                 signature="<job_id> [terminate]")
def bgp_cancel(state: Any, job_id: str, terminate: bool = False, **_: Any) -> dict[str, Any]:
    """celery-bgp: make the process running a job see its cancel now (or terminate it)."""
    active = next((r for r in list(worker_state.active_requests) if r.id == job_id), None)
    request = active or worker_state.requests.get(job_id)
    if request is None:
        return ok("not running here")
    pool = state.consumer.pool
    children = _children(pool)
    # Prefork kills a child (at once, or when the pool says it took the task); the
    # threads and solo pools cannot kill one task; gevent and eventlet kill a started one.
    if terminate and (children or request.time_start):
        try:
            request.terminate(pool, signal=_signal.SIGTERM)
            return ok(f"terminated job {job_id}")
        except NotImplementedError:
            pass
    if terminate:
        logger.warning("celery-bgp: the %s pool cannot terminate one task; job %s is only "
                       "asked to stop", type(pool).__name__, job_id)
    if not children:
        wake_all()  # threads, gevent, eventlet: the job runs in this process
        return ok(f"woke job {job_id}")
    pid = request.worker_pid
    # Not accepted yet, as far as this process knows: wake every child (each one asks
    # the store about its own jobs, so the others do nothing).
    _signal_children(children, [pid] if pid in children else children)
    return ok(f"woke job {job_id}")


def _children(pool: Any) -> list[int]:
    """The pids of a prefork pool's processes ([] for pools that run in this process)."""
    processes = getattr(getattr(pool, "_pool", None), "_pool", None)
    if not isinstance(processes, list):
        return []
    return [p.pid for p in processes if getattr(p, "pid", None)]


def _signal_children(children: list[int], pids: list[int]) -> None:
    if WAKE_SIGNAL is None:
        return  # the heartbeat will see it
    for pid in pids:
        if pid not in children:
            continue  # never signal a pid that is not (any more) one of our children
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, WAKE_SIGNAL)


def _revoked(sender: Any = None, request: Any = None, terminated: bool = False,
             signum: Any = None, **_: Any) -> None:
    """After a job's process was terminated (``bgp_cancel`` with terminate, or ``celery
    control terminate``), record Cancelled: it would otherwise stay Executing until its
    lock expired. Runs in the worker's main process."""
    from .install import JobTask

    if not terminated or not isinstance(sender, JobTask) or request is None:
        return
    args = list(getattr(request, "args", None) or ())
    if len(args) != 2:
        return
    bgp = sender.bgp
    reason = f"terminated by signal {signum}" if signum else "terminated"
    try:
        cancel_terminated(bgp.jobs, str(args[0]), str(args[1]), reason)
    except Exception:
        logger.exception("celery-bgp: could not record the cancel of terminated job %s",
                         args[0])
    finally:
        # The prefork pool forks the killed child's replacement from this thread next:
        # it must not inherit (and share with us) an open database connection.
        bgp.jobs.store.on_idle()


def cancel_terminated(jobs: Jobs, job_id: str, execution_id: str, reason: str) -> None:
    """Cancel execution ``execution_id`` of a job whose process was killed.

    The lock is the dead process's: it is released in the same write. A job that
    finished (or was recovered) meanwhile is left as it is.
    """
    job = jobs.store.get(job_id)
    if job is None or job.execution_id != execution_id:
        return
    try:
        if job.state == "Executing":
            holder = job.lock.holder if job.lock is not None else None
            jobs.machine.change(job_id, Cancelled(reason=reason), holder=holder, job=job,
                                expected={"Executing"}, release_lock=holder is not None)
        elif job.state == "Enqueued":  # killed before it started: its message is gone
            jobs.change_state(job_id, Cancelled(reason=reason), expected={"Enqueued"})
        else:
            return
    except StateConflict:
        return
    logger.info("celery-bgp: job %s cancelled (%s)", job_id, reason)


# -- the pool's processes ------------------------------------------------------------


def _on_wake_signal(signum: int, frame: Any) -> None:
    wake_all()


def install_wake_handler(**_: Any) -> None:
    """Handle :data:`WAKE_SIGNAL` in this process (main thread only; a no-op elsewhere)."""
    if WAKE_SIGNAL is None or threading.current_thread() is not threading.main_thread():
        return
    try:
        _signal.signal(WAKE_SIGNAL, _on_wake_signal)
    except (OSError, ValueError, RuntimeError):
        logger.warning("celery-bgp: cannot handle signal %s; cancels reach running jobs at "
                       "their next heartbeat", WAKE_SIGNAL, exc_info=True)


_connected = False
_connect_lock = threading.Lock()


def connect() -> None:
    """Connect the receivers once per process, whatever the number of instances.

    The wake handler is installed in the worker's main process before the pool starts
    (children forked from it inherit it) and again in each child at
    ``worker_process_init`` (spawned children, or code that reset it).
    """
    global _connected
    with _connect_lock:
        if _connected:
            return
        signals.worker_init.connect(install_wake_handler, weak=False)
        signals.worker_process_init.connect(install_wake_handler, weak=False)
        signals.task_revoked.connect(_revoked, weak=False)
        _connected = True
