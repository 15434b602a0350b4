"""Azurite, the Azure Storage emulator, run by the tests on free loopback ports.

Never the default ports 10000-10002, so parallel sessions and a developer's own
Azurite do not collide. Found on PATH or in ``<repo>/node_modules/.bin`` (``npm
install`` at the repository root installs it from package.json).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

ACCOUNT = "devstoreaccount1"
#: Azurite's well-known development account key (public, documented by Microsoft).
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
HOST = "127.0.0.1"


def find_azurite() -> str | None:
    """Path of the ``azurite`` executable, or None."""
    local = ROOT / "node_modules" / ".bin" / "azurite"
    if local.exists():
        return str(local)
    return shutil.which("azurite")


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (never 10000-10002)."""
    sockets, ports = [], []
    try:
        while len(ports) < count:
            s = socket.socket()
            s.bind((HOST, 0))
            port = s.getsockname()[1]
            sockets.append(s)
            if port not in (10000, 10001, 10002):
                ports.append(port)
    finally:
        for s in sockets:
            s.close()
    return ports


class Azurite:
    """One Azurite process (blob, queue, table) on its own ports.

    ``location=None`` keeps everything in memory; give a directory to keep data
    across :meth:`restart` (the connection-loss tests need that).
    """

    def __init__(self, executable: str, location: str | None = None) -> None:
        self.executable = executable
        self.location = location
        self.blob_port, self.queue_port, self.table_port = free_ports(3)
        self.proc: subprocess.Popen | None = None
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives with the process
            prefix="azurite-", suffix=".log", delete=False
        )
        self._workdir = tempfile.mkdtemp(prefix="azurite-")

    @property
    def connection_string(self) -> str:
        """Full connection string with explicit endpoints for these ports."""
        base = f"http://{HOST}"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint={base}:{self.blob_port}/{ACCOUNT};"
            f"QueueEndpoint={base}:{self.queue_port}/{ACCOUNT};"
            f"TableEndpoint={base}:{self.table_port}/{ACCOUNT};"
        )

    @property
    def queue_url(self) -> str:
        return f"http://{HOST}:{self.queue_port}/{ACCOUNT}"

    @property
    def table_url(self) -> str:
        return f"http://{HOST}:{self.table_port}/{ACCOUNT}"

    @property
    def blob_url(self) -> str:
        return f"http://{HOST}:{self.blob_port}/{ACCOUNT}"

    def log(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def start(self, timeout: float = 30.0) -> Azurite:
        """Start and wait until all three services accept connections."""
        args = [
            self.executable,
            "--blobHost", HOST, "--queueHost", HOST, "--tableHost", HOST,
            "--blobPort", str(self.blob_port), "--queuePort", str(self.queue_port),
            "--tablePort", str(self.table_port),
            "--skipApiVersionCheck", "--loose", "--silent", "--disableProductStyleUrl",
        ]
        if self.location:
            args += ["--location", self.location]
        else:
            args += ["--inMemoryPersistence"]
        self.proc = subprocess.Popen(
            args, stdout=self._log, stderr=subprocess.STDOUT, cwd=self._workdir,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        ports = (self.blob_port, self.queue_port, self.table_port)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"azurite exited with {self.proc.returncode}:\n{self.log()}")
            if all(_listening(port) for port in ports):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"azurite did not listen within {timeout}s:\n{self.log()}")

    def stop(self, timeout: float = 15.0) -> None:
        """Stop: SIGTERM, then SIGKILL once the three services report they closed.

        Azurite saves its data while closing, but the process lingers while clients
        keep connections open, so it is killed once the services said they closed
        (in-memory instances are killed at once: there is nothing to save).
        """
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.location:
            seen = self.log().count("successfully closed")
            os.killpg(self.proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self.log().count("successfully closed") >= seen + 3:
                    break
                time.sleep(0.05)
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _listening(self.queue_port):
            time.sleep(0.05)

    def restart(self) -> Azurite:
        """Stop, then start on the same ports (data kept only with a ``location``)."""
        self.stop()
        return self.start()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False
