"""The README's demo command, end to end, in a clean temporary folder."""
from __future__ import annotations

import re
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path

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
        assert re.search(r"daemon stock-watcher\s+running on demo@", output), output
        login = urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=10)
        assert login.status == 200
        assert b"Django administration" in login.read()
        check_the_rest_hint(output, port, tmp_path)
    finally:
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
    assert demo.returncode == 0, rest[-3000:]
    assert "Stopped." in rest
    left = subprocess.run(["pgrep", "-f", f"runserver 127.0.0.1:{port}"], capture_output=True)
    assert left.stdout == b""


def rest_hint(output: str) -> list[str]:
    """The shell lines the demo prints under "REST:" (each starts with "  curl ")."""
    return [line.strip() for line in output.splitlines() if line.startswith("  curl ")]


def check_the_rest_hint(output: str, port: int, tmp_path: Path) -> None:
    """Run the printed curl lines as they are: login, session, CSRF token, 202."""
    if shutil.which("curl") is None:
        if IN_CI:
            pytest.fail("curl is not installed", pytrace=False)
        return
    assert '{"sku": "kettle", "quantity": 2}' in output  # the body is shown
    lines = rest_hint(output)
    assert len(lines) == 3, output
    assert "X-CSRFToken" in lines[-1] and f"127.0.0.1:{port}/bgp/commands/" in lines[-1]
    result = None
    for line in lines:
        result = subprocess.run(["bash", "-c", line], cwd=tmp_path, capture_output=True,
                                text=True, timeout=30)
        assert result.returncode == 0, (line, result.stdout, result.stderr)
    assert result.stdout.startswith("HTTP/1.1 202"), result.stdout
    location = re.search(r"^Location: (\S+)", result.stdout, re.M).group(1)
    jar = re.search(r"-b (\S+)", lines[-1]).group(1)
    status = subprocess.run(["bash", "-c", f"curl -s -o /dev/null -w '%{{http_code}}' "
                             f"-b {jar} {location}"], capture_output=True, text=True,
                            timeout=30)
    assert status.stdout in ("200", "303"), status
    # without the token the API answers a problem, not Django's HTML page
    refused = subprocess.run(["bash", "-c", lines[-1].replace("X-CSRFToken", "X-Nothing")],
                             capture_output=True, text=True, timeout=30)
    assert refused.stdout.startswith("HTTP/1.1 403"), refused.stdout
    assert "application/problem+json" in refused.stdout


def test_a_restart_shows_only_what_is_new(tmp_path):
    """Run twice on one --data folder: the second run does not replay the first one's
    history (states and log lines of its jobs), and says that it keeps them."""
    data = tmp_path / "data"
    outputs = []
    for fresh in (True, False):
        port = free_port()
        demo = start_demo(data, port, fresh=fresh)
        try:
            outputs.append(read_until_ready(demo))
        finally:
            demo.send_signal(signal.SIGINT)
            rest, _ = demo.communicate(timeout=60)
        assert demo.returncode == 0, rest[-3000:]
    first, second = outputs
    assert "earlier runs" not in first
    assert re.search(r"Earlier:\s+\d+ jobs of earlier runs", second), second
    for output in outputs:  # each run shows its own samples' lines once, no more
        assert output.count("report 2026-10: step 1/10") == 1, output
    progress = re.findall(r"^\d\d:\d\d:\d\d  (.*)$", second, re.M)
    assert progress, second
    # the first run's jobs show by their names (this run's samples by their labels)
    replayed = [line for line in progress
                if line.startswith(("shop.jobs:generate_report", "shop.commands."))]
    assert replayed == [], second
