"""Loopback servers the integration tests need: find them, or skip (fail under CI).

The suite owns what it touches: Redis is a ``redis-server`` of its own on a free port
(started once per test session, inherited by worker subprocesses through
``BGP_TEST_REDIS_PORT``), RabbitMQ a vhost of its own (``rabbitmq_vhost``), PostgreSQL
and MariaDB the test databases pytest-django creates and drops. Nothing a developer
keeps on the shared servers is flushed or deleted.
"""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator

import pytest

#: Under CI a missing server is a failure, never a skip.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the test process dies, even by SIGKILL."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _private_redis_port() -> int:
    """Port of the session's own ``redis-server`` (0 when redis-server is not installed).

    ``BGP_TEST_REDIS_PORT`` set by hand points the suite at a Redis of your choice
    instead; the suite then uses (and flushes) only its databases 10-13.
    """
    if os.environ.get("BGP_TEST_REDIS_PORT"):
        return int(os.environ["BGP_TEST_REDIS_PORT"])
    binary = shutil.which("redis-server")
    if binary is None:
        return 0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    folder = tempfile.mkdtemp(prefix="bgp-test-redis-")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", folder, "--logfile", "redis.log", "--databases", "16"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)

    def stop() -> None:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)

    atexit.register(stop)
    deadline = time.monotonic() + 10
    while not reachable("127.0.0.1", port, 0.2) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.environ["BGP_TEST_REDIS_PORT"] = str(port)  # worker subprocesses inherit it
    return port


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    """True if a TCP connection to host:port succeeds."""
    if not port:
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


REDIS_HOST, REDIS_PORT = "127.0.0.1", _private_redis_port()
AMQP_HOST, AMQP_PORT = "127.0.0.1", int(os.environ.get("BGP_TEST_AMQP_PORT", "5672"))
PG_HOST, PG_PORT = "127.0.0.1", int(os.environ.get("BGP_TEST_PG_PORT", "5432"))
MARIADB_HOST = "127.0.0.1"
MARIADB_PORT = int(os.environ.get("BGP_TEST_MARIADB_PORT", "3306"))

START_HINTS = {
    "Redis": "apt-get install redis-server (the suite starts its own on a free port)",
    "RabbitMQ": "rabbitmq-server -detached",
    "PostgreSQL": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "MariaDB": "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
}


def require_server(name: str, host: str, port: int) -> None:
    """Skip the test when the server is down; under CI, fail it instead."""
    if reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port} (start it: {START_HINTS.get(name, '?')})"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@contextlib.contextmanager
def rabbitmq_vhost() -> Iterator[str]:
    """A RabbitMQ vhost of the suite's own, deleted at the end (``rabbitmqctl``).

    ``BGP_TEST_AMQP_VHOST`` names an existing vhost to use instead (left as it is).
    """
    if os.environ.get("BGP_TEST_AMQP_VHOST"):
        yield os.environ["BGP_TEST_AMQP_VHOST"]
        return
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        message = "rabbitmqctl is not installed: cannot create the suite's own vhost " \
                  "(or set BGP_TEST_AMQP_VHOST to a vhost guest may use)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    name = f"bgp-test-{uuid.uuid4().hex[:8]}"

    def ctl_run(*args: str) -> None:
        subprocess.run([ctl, *args], check=True, capture_output=True, timeout=60)

    ctl_run("add_vhost", name)
    try:
        ctl_run("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield name
    finally:
        ctl_run("delete_vhost", name)
