"""Daemon test fixtures: real workers of ``tests.apps.daemon_app`` on the Django store."""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import BROKER_DB, failed, stack_env
from tests.helpers.workers import WorkerProcess

APP = "tests.apps.daemon_app"
#: The lease timeout the test workers use (seconds): short, so takeovers are quick.
LOCK_TIMEOUT = 3.0


def wait_for(check: Callable[[], object], timeout: float = 30.0, what: str = "",
             interval: float = 0.1) -> object:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or check}")
        time.sleep(interval)


class Workers:
    """Start daemon-app workers (in parallel), stop them all at the end."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.running: list[WorkerProcess] = []

    def start(self, count: int = 1, queues: list[list[str]] | None = None,
              **env: str) -> list[WorkerProcess]:
        queues = queues or [[self.env["BGP_TEST_QUEUE"]]] * count
        made = [WorkerProcess(APP, {**self.env, **env}, q, pool="solo", concurrency=1)
                for q in queues]
        self.running += made
        with ThreadPoolExecutor(len(made)) as pool:
            list(pool.map(lambda w: w.start(90), made))
        return made

    def stop_all(self) -> None:
        with ThreadPoolExecutor(max(1, len(self.running))) as pool:
            list(pool.map(lambda w: w.stop(30), self.running))


@pytest.fixture
def daemon_env(redis_base):
    key = f"bgp-daemon-{uuid.uuid4().hex[:8]}"
    env = stack_env(f"{redis_base}/{BROKER_DB}", redis_base, key)
    env.update(BGP_TEST_DAEMON_KEY=key, BGP_TEST_LOCK_TIMEOUT=str(LOCK_TIMEOUT))
    return env


@pytest.fixture
def workers(daemon_env, request):
    made = Workers(daemon_env)
    yield made
    made.stop_all()
    if failed(request):
        for worker in made.running:
            print(f"--- worker {worker.hostname} ---\n{worker.log()[-5000:]}")
