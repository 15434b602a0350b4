"""An event store that is down never fails a command, on either side."""
from __future__ import annotations

import time
import uuid

import pytest

from tests.apps.commands import Echo
from tests.conftest import BROKER_DB, Stack, stack_env
from tests.helpers.workers import WorkerProcess

pytestmark = pytest.mark.integration

DEAD_STORE = "redis://127.0.0.1:1/0?socket_connect_timeout=0.2"


def test_worker_runs_commands_while_the_event_store_is_down(redis_base):
    queue = f"bgp-dead-{uuid.uuid4().hex[:6]}"
    env = {**stack_env(f"{redis_base}/{BROKER_DB}", redis_base, queue),
           "BGP_TEST_EVENTS": DEAD_STORE}
    with WorkerProcess("tests.apps.worker_app", env, [queue],
                       pool="threads", concurrency=2) as worker:
        bgp = Stack("redis", env, worker, queue).publisher(event_repository=DEAD_STORE)
        bgp.recorder.retry_for = 0.2
        results = [bgp.dispatch(Echo(text=str(i))) for i in range(5)]
        assert [r.get(timeout=30) for r in results] == [str(i) for i in range(5)]
        assert bgp.events.flush(10)
        assert bgp.events.stats.dropped == 5  # the DISPATCHED events, counted
        deadline = time.monotonic() + 10
        while "event repository write failed" not in worker.log():
            assert time.monotonic() < deadline, worker.log()
            time.sleep(0.2)
