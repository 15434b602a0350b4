"""Fixtures of the Azure tests: Azurite on free ports, azurequeue:// connections, workers."""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import uuid

import pytest
from celery import Celery
from kombu import Connection

from celery_bgp import BackgroundProcessing
from tests.conftest import BACKEND_DB, SINK_DB
from tests.helpers.azurite import Azurite, find_azurite
from tests.helpers.servers import IN_CI
from tests.helpers.workers import WorkerProcess

#: Transport options that keep the tests quick (short leases, fast polling).
FAST = {"polling_interval": 0.05, "max_polling_interval": 0.5, "visibility_timeout": 30}


def _require_azurite() -> str:
    exe = find_azurite()
    if exe is None:
        message = "azurite not found on PATH or in node_modules/.bin (run `npm install`)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return exe


@pytest.fixture(scope="session")
def azurite():
    """One in-memory Azurite for the session; AZURE_STORAGE_CONNECTION_STRING points at it."""
    server = Azurite(_require_azurite()).start()
    saved = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
    os.environ["AZURE_STORAGE_CONNECTION_STRING"] = server.connection_string
    yield server
    if saved is None:
        os.environ.pop("AZURE_STORAGE_CONNECTION_STRING", None)
    else:
        os.environ["AZURE_STORAGE_CONNECTION_STRING"] = saved
    server.stop()


@pytest.fixture
def restartable_azurite():
    """An Azurite of this test alone, on disk, so data survives stop()/start()."""
    exe = _require_azurite()
    with tempfile.TemporaryDirectory(prefix="azurite-data-") as location:
        server = Azurite(exe, location=location).start()
        yield server
        server.stop()


@pytest.fixture
def prefix() -> str:
    """A queue-name prefix unique to the test, so tests never see each other's queues."""
    return f"t{uuid.uuid4().hex[:8]}-"


@pytest.fixture
def connect(azurite, prefix):
    """``connect(**options)``: an azurequeue:// kombu Connection, closed after the test."""
    opened: list[Connection] = []

    def make(**options) -> Connection:
        conn = Connection("azurequeue://",
                          transport_options={**FAST, "queue_name_prefix": prefix, **options})
        conn.ensure_connection(max_retries=3)
        opened.append(conn)
        return conn

    yield make
    for conn in opened:
        conn.release()


@dataclasses.dataclass
class AzureStack:
    """Azurite, the env of a worker on it, and publisher-side helpers."""

    azurite: Azurite
    env: dict[str, str]
    queue: str
    options: dict
    worker: WorkerProcess | None = None

    def app(self) -> Celery:
        app = Celery(f"az-pub-{uuid.uuid4().hex[:6]}", set_as_current=False)
        app.conf.update(
            broker_url="azurequeue://",
            broker_transport_options=self.options,
            result_backend=self.env["BGP_TEST_BACKEND"],
            task_default_queue=self.queue,
        )
        return app

    def publisher(self, **options) -> BackgroundProcessing:
        options.setdefault("event_repository", self.env["BGP_TEST_EVENTS"])
        return BackgroundProcessing(self.app(), name=f"pub-{uuid.uuid4().hex[:6]}", **options)

    def new_worker(self, queues: list[str] | None = None, **kw) -> WorkerProcess:
        return WorkerProcess("tests.apps.azure_app", self.env, queues or [self.queue], **kw)


def azure_env(azurite: Azurite, redis_base: str, queue: str, options: dict,
              prefetch: int = 4) -> dict[str, str]:
    return {
        "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
        "BGP_TEST_TRANSPORT_OPTIONS": json.dumps(options),
        "BGP_TEST_BACKEND": f"{redis_base}/{BACKEND_DB}",
        "BGP_TEST_EVENTS": "azuretable://?table=bgpevents",
        "BGP_TEST_SINK": f"{redis_base}/{SINK_DB}",
        "BGP_TEST_QUEUE": queue,
        "BGP_TEST_PREFETCH": str(prefetch),
    }


@pytest.fixture
def make_stack(azurite, redis_base, prefix):
    """``make_stack(**options)``: an AzureStack with its own prefix and queue (no worker)."""
    workers: list[WorkerProcess] = []

    def make(prefetch: int = 4, **options) -> AzureStack:
        opts = {**FAST, "queue_name_prefix": prefix, **options}
        queue = f"q{uuid.uuid4().hex[:6]}"
        stack = AzureStack(azurite, azure_env(azurite, redis_base, queue, opts, prefetch),
                           queue, opts)
        original = stack.new_worker

        def tracked(*a, **kw):
            w = original(*a, **kw)
            workers.append(w)
            return w

        stack.new_worker = tracked  # type: ignore[method-assign]
        return stack

    yield make
    for w in workers:
        w.kill()


@pytest.fixture(scope="session")
def azure_stack(azurite, redis_base):
    """A session-long worker (prefork, 2 processes) on azurequeue:// for the common tests."""
    options = {**FAST, "queue_name_prefix": "s-"}
    queue = f"bgp-az-{uuid.uuid4().hex[:6]}"
    stack = AzureStack(azurite, azure_env(azurite, redis_base, queue, options), queue, options)
    stack.worker = stack.new_worker([queue]).start()
    yield stack
    stack.worker.stop()

