"""Real ``celery worker`` subprocesses for integration tests."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """One ``python -m celery -A <module> worker`` in its own process group."""

    def __init__(
        self,
        app_module: str,
        env: dict[str, str],
        queues: list[str],
        *,
        pool: str = "prefork",
        concurrency: int | None = 2,
        extra_args: tuple[str, ...] = (),
        cwd: str | os.PathLike | None = None,
    ) -> None:
        self.app_module = app_module
        self.env = env
        self.queues = queues
        self.pool = pool
        self.concurrency = concurrency
        self.extra_args = extra_args
        self.cwd = cwd or ROOT
        self.hostname = f"bgp-test-{uuid.uuid4().hex[:8]}@localhost"
        self.proc: subprocess.Popen | None = None
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the worker
            prefix="bgp-worker-", suffix=".log", delete=False
        )

    @property
    def log_path(self) -> str:
        return self._log.name

    def log(self) -> str:
        """Everything the worker printed so far."""
        return Path(self.log_path).read_text(errors="replace")

    def start(self, timeout: float = 60.0) -> WorkerProcess:
        """Start and wait until the worker logs that it is ready."""
        env = {**os.environ, "C_FORCE_ROOT": "1", **self.env}  # CI runs as root
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), str(self.cwd), env.get("PYTHONPATH", "")) if p
        )
        cmd = [
            sys.executable, "-m", "celery", "-A", self.app_module, "worker",
            "-P", self.pool, *(["-c", str(self.concurrency)] if self.concurrency else []),
            "-n", self.hostname,
            *(["-Q", ",".join(self.queues)] if self.queues else []), "-l", "INFO",
            "--without-gossip", "--without-mingle", *self.extra_args,
        ]
        self.proc = subprocess.Popen(
            cmd, cwd=self.cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.log():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"worker not ready after {timeout}s:\n{self.log()}")

    def stop(self, timeout: float = 30.0) -> int | None:
        """Warm shutdown (SIGTERM); SIGKILL if it takes longer than ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        """SIGKILL the worker and its pool children at once."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Supervisor:
    """Restart a worker whenever it exits, as ``systemd Restart=always`` would.

    docs/operations.rst advises running workers under a supervisor: a Redis crash while
    messages are unacknowledged can make a worker exit (kombu/Celery), and the messages
    come back to the next worker after the visibility timeout.
    """

    def __init__(self, worker: WorkerProcess, interval: float = 0.5) -> None:
        import threading

        self.worker = worker
        self.interval = interval
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-supervisor", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            proc = self.worker.proc
            if proc is not None and proc.poll() is not None and not self._stop.is_set():
                self.restarts += 1
                # Exited again at once (the broker is still away): the next round retries.
                with contextlib.suppress(RuntimeError):
                    self.worker.start()

    def __enter__(self) -> Supervisor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
