"""Loopback servers the integration tests need: find them, or skip (fail under CI)."""
from __future__ import annotations

import os
import socket

import pytest

#: Under CI a missing server is a failure, never a skip.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

REDIS_HOST, REDIS_PORT = "127.0.0.1", int(os.environ.get("BGP_TEST_REDIS_PORT", "6379"))
AMQP_HOST, AMQP_PORT = "127.0.0.1", int(os.environ.get("BGP_TEST_AMQP_PORT", "5672"))
PG_HOST, PG_PORT = "127.0.0.1", int(os.environ.get("BGP_TEST_PG_PORT", "5432"))
MARIADB_HOST = "127.0.0.1"
MARIADB_PORT = int(os.environ.get("BGP_TEST_MARIADB_PORT", "3306"))

START_HINTS = {
    "Redis": "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save ''",
    "RabbitMQ": "rabbitmq-server -detached",
    "PostgreSQL": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "MariaDB": "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
}


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    """True if a TCP connection to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_server(name: str, host: str, port: int) -> None:
    """Skip the test when the server is down; under CI, fail it instead."""
    if reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port} (start it: {START_HINTS.get(name, '?')})"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
