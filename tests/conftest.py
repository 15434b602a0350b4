"""Fixtures shared by all tests: loopback servers and real worker subprocesses."""
from __future__ import annotations

import dataclasses
import os
import uuid

import pytest
from celery import Celery

from celery_bgp import BackgroundProcessing
from tests.helpers.servers import (
    AMQP_HOST,
    AMQP_PORT,
    REDIS_HOST,
    REDIS_PORT,
    rabbitmq_vhost,
    require_server,
)
from tests.helpers.workers import WorkerProcess

# Redis databases the suite uses on its own redis-server (tests/helpers/servers.py).
# BGP_TEST_REDIS_DB_BASE moves them when BGP_TEST_REDIS_PORT points at a shared Redis.
_BASE = int(os.environ.get("BGP_TEST_REDIS_DB_BASE", "10"))
BROKER_DB, BACKEND_DB, EVENTS_DB, SINK_DB = _BASE, _BASE + 1, _BASE + 2, _BASE + 3


@pytest.fixture(scope="session")
def redis_base() -> str:
    """``redis://127.0.0.1:<port>`` of the suite's own Redis, its test databases empty."""
    require_server("Redis", REDIS_HOST, REDIS_PORT)
    import redis

    base = f"redis://{REDIS_HOST}:{REDIS_PORT}"
    for db in (BROKER_DB, BACKEND_DB, EVENTS_DB, SINK_DB):
        redis.Redis.from_url(f"{base}/{db}").flushdb()
    return base


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """A URL to the suite's own RabbitMQ vhost, deleted when the session ends."""
    require_server("RabbitMQ", AMQP_HOST, AMQP_PORT)
    with rabbitmq_vhost() as vhost:
        yield f"amqp://guest:guest@{AMQP_HOST}:{AMQP_PORT}/{vhost}"


@pytest.fixture
def sink(redis_base):
    import redis

    return redis.Redis.from_url(f"{redis_base}/{SINK_DB}", decode_responses=True)


@dataclasses.dataclass
class Stack:
    """A broker, a running worker subprocess, and the env that describes both."""

    broker: str
    env: dict[str, str]
    worker: WorkerProcess
    queue: str

    def app(self) -> Celery:
        """A fresh publisher-side app configured like the worker's."""
        app = Celery(f"publisher-{uuid.uuid4().hex[:6]}", set_as_current=False)
        app.conf.update(
            broker_url=self.env["BGP_TEST_BROKER"],
            result_backend=self.env["BGP_TEST_BACKEND"],
            task_default_queue=self.queue,
            broker_connection_retry_on_startup=True,
        )
        return app

    def publisher(self, **options) -> BackgroundProcessing:
        """A publisher-only BackgroundProcessing (no handlers) on the same stores."""
        options.setdefault("event_repository", self.env["BGP_TEST_EVENTS"])
        return BackgroundProcessing(self.app(), name=f"pub-{uuid.uuid4().hex[:6]}", **options)


def stack_env(broker_url: str, redis_base: str, queue: str) -> dict[str, str]:
    return {
        "BGP_TEST_BROKER": broker_url,
        "BGP_TEST_BACKEND": f"{redis_base}/{BACKEND_DB}",
        "BGP_TEST_EVENTS": f"{redis_base}/{EVENTS_DB}",
        "BGP_TEST_SINK": f"{redis_base}/{SINK_DB}",
        "BGP_TEST_QUEUE": queue,
    }


@pytest.fixture(scope="session", params=["redis", "amqp"])
def stack(request, redis_base):
    """A real ``celery worker`` (prefork, 2 processes) on Redis or RabbitMQ."""
    if request.param == "redis":
        broker_url = f"{redis_base}/{BROKER_DB}"
    else:
        broker_url = request.getfixturevalue("amqp_url")
    queue = f"bgp-test-{uuid.uuid4().hex[:8]}"
    routed = f"{queue}-routed"
    env = stack_env(broker_url, redis_base, queue)
    worker = WorkerProcess("tests.apps.worker_app", env, [queue, routed]).start()
    yield Stack(request.param, env, worker, queue)
    worker.stop()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so fixtures can tell a test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def failed(request) -> bool:
    """True if the requesting test's call phase failed."""
    report = getattr(request.node, "rep_call", None)
    return bool(report and report.failed)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Print the fault-injection table when fault scenarios ran."""
    from tests.helpers.faults import RESULTS, summary_lines

    if RESULTS:
        terminalreporter.section("celery-bgp fault injection")
        for line in summary_lines():
            terminalreporter.write_line(line)
