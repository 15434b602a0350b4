"""The README's demo command, end to end, in a clean temporary folder."""
from __future__ import annotations

import re
import signal
import subprocess
import urllib.request

import pytest

from tests.conftest import BROKER_DB
from tests.helpers.demo import free_port, read_until_ready, start_demo
from tests.helpers.servers import (
    AMQP_HOST,
    AMQP_PORT,
    IN_CI,
    REDIS_HOST,
    REDIS_PORT,
    require_server,
)
from tests.helpers.workers import ROOT

pytestmark = pytest.mark.integration


def need(broker: str, request) -> str | None:
    """The URL of the test's own server behind ``--broker`` (the demo starts Azurite)."""
    if broker == "redis":
        require_server("Redis", REDIS_HOST, REDIS_PORT)
        return f"{request.getfixturevalue('redis_base')}/{BROKER_DB}"
    if broker == "rabbitmq":
        require_server("RabbitMQ", AMQP_HOST, AMQP_PORT)
        return request.getfixturevalue("amqp_url")
    if broker == "azurite" and not (ROOT / "node_modules" / ".bin" / "azurite").exists():
        if IN_CI:
            pytest.fail("Azurite is not installed: run npm ci", pytrace=False)
        pytest.skip("Azurite is not installed: run npm ci")
    return None


@pytest.mark.parametrize("broker", ["embedded", "redis", "rabbitmq", "azurite"])
def test_the_demo_runs_every_sample_and_stops_cleanly(tmp_path, broker, request):
    url = need(broker, request)
    port = free_port()
    demo = start_demo(tmp_path / "data", port, broker, broker_url=url)
    try:
        output = read_until_ready(demo)
        assert f"broker {broker}" in output
        password = re.search(r"user admin\s+password (\S+)", output)
        assert password, output
        for label in ("place order (fast)", "refund (fails)", "generate report",
                      "charge card", "send reminder (delayed 20s)", "ship order (continuation)"):
            assert label in output
        assert "report 2026-10: step 10/10" in output
        login = urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=10)
        assert login.status == 200
        assert b"Django administration" in login.read()
    finally:
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
    assert demo.returncode == 0, rest[-3000:]
    assert "Stopped." in rest
    left = subprocess.run(["pgrep", "-f", f"runserver 127.0.0.1:{port}"], capture_output=True)
    assert left.stdout == b""
