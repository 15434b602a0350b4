"""The README's demo command as the tests run it: started in a clean folder, read until
every sample ran, stopped with Ctrl-C (SIGINT)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers.workers import ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_demo(data: Path, port: int, broker: str = "embedded",
               broker_url: str | None = None, fresh: bool = True) -> subprocess.Popen:
    """``python django_app/demo.py`` without the test run's Django/BGP environment.

    ``broker_url`` points ``--broker`` at the test's own server (BGP_DEMO_BROKER_URL);
    ``fresh=False`` runs it again on what ``data`` holds (no ``--fresh``).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "BGP_"))}
    if broker_url:
        env["BGP_DEMO_BROKER_URL"] = broker_url
    return subprocess.Popen(
        [sys.executable, "django_app/demo.py", "--data", str(data),
         *(["--fresh"] if fresh else []), "--port", str(port), "--broker", broker],
        cwd=ROOT, env={**env, "COLUMNS": "200"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )


def read_until_ready(demo: subprocess.Popen, timeout: float = 240) -> str:
    """The demo's output up to its "demo ready" line (it fails if the demo exits first)."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while not any("demo ready" in line for line in lines):
        line = demo.stdout.readline()
        assert line or demo.poll() is None, "".join(lines)
        lines.append(line)
        assert time.monotonic() < deadline, "".join(lines)
    return "".join(lines)


def in_demo(data: Path, code: str, *args: str) -> str:
    """Run ``code`` in the demo's Django project on its ``--data`` folder (a submit, a
    cancel, as its own ``manage.py shell`` would); what it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "BGP_"))}
    env.update(BGP_DEMO_DATA=str(data), DJANGO_SETTINGS_MODULE="proj.settings")
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT / "django_app",
                          env=env, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()
