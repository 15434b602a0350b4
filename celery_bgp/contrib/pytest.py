"""pytest fixtures to test command handlers (installed as the ``celery_bgp`` plugin).

Override the ``bgp`` fixture in your conftest.py to return your project's
:class:`~celery_bgp.BackgroundProcessing`; the default is a fresh instance on an
in-memory broker. Then pick a mode per test:

- ``bgp_eager``: dispatch runs the handler in-process, synchronously, with events.
- ``bgp_captured``: dispatch records what would be sent and sends nothing.
- ``bgp_worker``: a real Celery worker (a thread in this process) consumes from the
  app's broker; ``bgp_worker.wait(command)`` waits for the command to finish.

pytest-celery 1.x's worker fixtures need Docker; these build on
``celery.contrib.testing`` and need nothing but the broker your app names.
"""
from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

__all__ = ["CapturedDispatches", "Dispatched", "WorkerHandle"]


@dataclasses.dataclass(frozen=True)
class Dispatched:
    """One captured dispatch: the command and the final Celery options."""

    command: Any
    options: dict[str, Any]


class CapturedDispatches(list):
    """The commands dispatched during a test, in order (a list of :class:`Dispatched`)."""

    def __init__(self, bgp: Any) -> None:
        super().__init__()
        self._bgp = bgp

    @property
    def commands(self) -> list[Any]:
        """Just the commands."""
        return [d.command for d in self]

    def of_type(self, command_type: type) -> list[Any]:
        """Captured commands of one type."""
        return [d.command for d in self if isinstance(d.command, command_type)]

    def assert_dispatched(self, command_type: type, **fields: Any) -> Any:
        """Assert one command of ``command_type`` with these field values was dispatched."""
        for command in self.of_type(command_type):
            if all(getattr(command, k, object()) == v for k, v in fields.items()):
                return command
        seen = [type(c).__name__ for c in self.commands]
        raise AssertionError(
            f"no {command_type.__name__} with {fields} was dispatched; dispatched: {seen}"
        )

    def run_all(self) -> list[Any]:
        """Process the captured commands in-process (handlers and decorators), in order."""
        pending, self[:] = list(self), []
        return [self._bgp.process(d.command) for d in pending]


def _final_capture(captured: CapturedDispatches, original: Any):
    from celery.result import EagerResult

    def capture(context: Any) -> Any:
        if not context.options.get("_bgp_send", True):
            return original(context)
        context.options.pop("_bgp_send", None)
        captured.append(Dispatched(context.command, dict(context.options)))
        return EagerResult(context.command.id, None, "PENDING")

    return capture


@contextmanager
def capture_dispatches(bgp: Any) -> Iterator[CapturedDispatches]:
    """Context manager behind ``bgp_captured``: nothing reaches the broker inside it."""
    captured = CapturedDispatches(bgp)
    pipeline = bgp.dispatcher
    original = pipeline.final
    pipeline.final = _final_capture(captured, original)
    try:
        yield captured
    finally:
        pipeline.final = original


class WorkerHandle:
    """A running in-process worker plus ways to wait for commands."""

    def __init__(self, bgp: Any, worker: Any) -> None:
        self.bgp = bgp
        self.worker = worker
        self._finished = 0
        self._cond = threading.Condition()

    def _count(self, context: Any, call_next: Any) -> Any:
        try:
            return call_next(context)
        finally:
            with self._cond:
                self._finished += 1
                self._cond.notify_all()

    def wait(self, command: Any, timeout: float = 30.0) -> Any:
        """Wait for a command (or id) to reach a final event; return that event."""
        command_id = command if isinstance(command, str) else command.id
        return self.bgp.events.wait_for(command_id, timeout=timeout)

    def wait_for_count(self, count: int, timeout: float = 30.0) -> None:
        """Wait until ``count`` commands finished (either way) since the worker started."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._finished < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{self._finished} of {count} commands finished")
                self._cond.wait(remaining)


@pytest.fixture
def bgp_app() -> Any:
    """A throwaway Celery app on the in-memory broker, for the default ``bgp``."""
    from celery import Celery

    app = Celery(f"bgp-test-{uuid.uuid4().hex[:8]}", set_as_current=False)
    app.conf.update(
        broker_url="memory://",
        result_backend="cache+memory://",
        worker_hijack_root_logger=False,
    )
    return app


@pytest.fixture
def bgp(bgp_app: Any) -> Any:
    """The BackgroundProcessing under test; override it to return your own."""
    from celery_bgp import BackgroundProcessing
    from celery_bgp.events.memory import MemoryEventRepository

    return BackgroundProcessing(
        bgp_app,
        name=f"test-{uuid.uuid4().hex[:8]}",
        event_repository=MemoryEventRepository(),
        event_write="sync",
    )


@pytest.fixture
def bgp_eager(bgp: Any) -> Iterator[Any]:
    """``bgp`` with ``task_always_eager``: dispatch runs the handler before returning."""
    conf = bgp.app.conf
    saved = conf.task_always_eager
    conf.task_always_eager = True
    try:
        yield bgp
    finally:
        conf.task_always_eager = saved


@pytest.fixture
def bgp_captured(bgp: Any) -> Iterator[CapturedDispatches]:
    """Record dispatched commands instead of sending them."""
    with capture_dispatches(bgp) as captured:
        yield captured


@pytest.fixture
def bgp_worker(bgp: Any) -> Iterator[WorkerHandle]:
    """A real Celery worker (thread, ``threads`` pool) consuming ``bgp.app``'s broker."""
    from celery.contrib.testing.worker import start_worker

    bgp.discover()
    handle = WorkerHandle(bgp, None)
    bgp.processor_decorator(handle._count)
    queues = bgp.app.conf.task_default_queue
    try:
        with start_worker(
            bgp.app,
            pool="threads",
            concurrency=2,
            perform_ping_check=False,
            shutdown_timeout=10.0,
            loglevel="WARNING",
            queues=[queues] if queues else None,
        ) as worker:
            handle.worker = worker
            yield handle
    finally:
        bgp.processor.remove(handle._count)
