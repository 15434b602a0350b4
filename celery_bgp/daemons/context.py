"""What a running daemon gets: its name, a stop token, persisted logs, properties, state.

The daemon's callable takes one argument, a :class:`DaemonContext`; it runs until it
returns, raises, or sees :attr:`DaemonContext.stop` fire (an operator's stop or
restart, the worker shutting down, or the lease lost) and returns.
"""
from __future__ import annotations

import logging
import traceback
from typing import TYPE_CHECKING, Any

from ..commands import utcnow
from ..jobs.context import CancellationToken
from ..jobs.model import LogRecord

if TYPE_CHECKING:
    from .client import Daemons
    from .model import DaemonSpec

__all__ = ["DaemonContext", "StopToken"]


class StopToken(CancellationToken):
    """Fires when the daemon must stop; ``wait(seconds)`` sleeps but wakes on stop."""

    @property
    def stopped(self) -> bool:
        return self.cancelled


class DaemonContext:
    """The running copy of a daemon, on one worker."""

    def __init__(self, daemons: Daemons, spec: DaemonSpec, row_id: str, worker: str,
                 stop: StopToken) -> None:
        self.daemons = daemons
        self.spec = spec
        self.row_id = row_id
        self.worker = worker
        self.stop = stop
        self._logger = logging.getLogger(f"celery_bgp.daemons.{spec.name}")

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def stopping(self) -> bool:
        """True once the daemon was asked to stop: finish up and return."""
        return self.stop.cancelled

    def wait(self, seconds: float) -> bool:
        """Sleep ``seconds``, waking early when asked to stop; True if asked to stop."""
        return self.stop.wait(seconds)

    @property
    def properties(self) -> dict[str, Any]:
        """Properties as stored (operators see them in the admin and the CLI)."""
        row = self.daemons.store.get(self.row_id)
        return dict(row.properties) if row else {}

    def set_property(self, name: str, value: Any) -> None:
        """Set a JSON property (merged into the stored ones)."""
        self.daemons.store.update(self.row_id, {"properties": {**self.properties, name: value}})

    @property
    def state(self) -> Any:
        """The JSON state this daemon last exposed (kept across restarts and takeovers)."""
        row = self.daemons.store.get(self.row_id)
        return row.state if row else None

    def set_state(self, value: Any) -> None:
        """Expose ``value`` (JSON: progress, offsets ...) to operators and the next run."""
        self.daemons.store.update(self.row_id, {"state": value})

    def log(self, level: int | str, message: str, exc: BaseException | None = None) -> None:
        """Log through ``logging``; persist at or above ``bgp_job_log_level``."""
        if isinstance(level, str):
            level = logging.getLevelName(level.upper())
            if not isinstance(level, int):
                raise ValueError(f"unknown log level {level!r}")
        self._logger.log(level, "[%s] %s", self.spec.name, message, exc_info=exc)
        if level >= self.daemons.bgp.settings.job_log_level:
            text = "".join(traceback.format_exception(exc)) if exc is not None else None
            self.daemons.store.add_log(self.daemons.environment, self.spec.name, self.worker,
                                       LogRecord(level, message, utcnow(), text))

    def info(self, message: str) -> None:
        self.log(logging.INFO, message)

    def warning(self, message: str) -> None:
        self.log(logging.WARNING, message)

    def error(self, message: str, exc: BaseException | None = None) -> None:
        self.log(logging.ERROR, message, exc)
