#!/usr/bin/env python3
"""The one-command demo: ``python3 django_app/demo.py``.

On a machine with only Python it creates ``.venv-demo`` and installs celery-bgp
there, then: migrates an SQLite database, creates an admin login (printed), starts a
real ``celery worker`` (with beat) on an embedded broker that needs no server (kombu's
filesystem transport), starts the Django admin on 127.0.0.1, submits every kind of
sample work, and shows its progress here. Ctrl-C stops everything.

``--broker redis|rabbitmq|azurite`` uses a server on 127.0.0.1 instead (Azurite is
started from ``node_modules`` if it is not running).
"""
from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent
ROOT = APP_DIR.parent
VENV = ROOT / ".venv-demo"
REQUIRED = ("celery_bgp", "django", "django_celery_results", "django_celery_beat", "rich")


def ensure_environment(argv: list[str]) -> None:
    """Re-run inside ``.venv-demo`` (created on first use) unless the deps are here."""
    missing = []
    for module in REQUIRED:
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if not missing:
        return
    python = VENV / "bin" / "python"
    if Path(sys.prefix) == VENV:
        sys.exit(f"the demo environment {VENV} lacks {missing}; delete it and try again")
    if not python.exists():
        print(f"Creating {VENV} and installing celery-bgp (first run only) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
                       check=True)
    extras = "django,redis,azure" if "azurite" in argv else "django,redis"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-e",
                    f"{ROOT}[{extras}]"], check=True)
    os.execv(str(python), [str(python), __file__, *argv])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Stack:
    """The worker, the web server (and Azurite): started, watched, stopped."""

    def __init__(self, data: Path, env: dict[str, str]) -> None:
        self.data, self.env = data, env
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, cmd: list[str]) -> None:
        log = open(self.data / f"{name}.log", "ab")  # noqa: SIM115 - closed by the OS at exit
        self.procs[name] = subprocess.Popen(cmd, cwd=APP_DIR, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def check(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.data / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"the {name} stopped (exit {proc.returncode}):\n{tail}")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default="embedded",
                        choices=["embedded", "redis", "rabbitmq", "azurite"])
    parser.add_argument("--port", type=int, default=8000, help="admin on 127.0.0.1:PORT")
    parser.add_argument("--data", type=Path, default=APP_DIR / ".demo",
                        help="folder for the database, broker files and logs")
    parser.add_argument("--fresh", action="store_true", help="start from an empty folder")
    args = parser.parse_args(argv)
    ensure_environment(argv)

    from rich.console import Console

    console = Console(highlight=False)
    if args.fresh and args.data.exists():
        shutil.rmtree(args.data)
    args.data.mkdir(parents=True, exist_ok=True)
    if port_open(args.port):
        console.print(f"[red]127.0.0.1:{args.port} is taken; pass --port[/]")
        return 2
    # SIGTERM (a service manager, `timeout`) stops the demo like Ctrl-C does; SIGINT is
    # set too, as a shell that starts us in the background leaves it ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "proj.settings",
           "BGP_DEMO_DATA": str(args.data), "BGP_DEMO_BROKER": args.broker,
           "PYTHONPATH": os.pathsep.join([str(APP_DIR), str(ROOT),
                                          os.environ.get("PYTHONPATH", "")]),
           "PYTHONUNBUFFERED": "1"}
    os.environ.update(env)
    sys.path[:0] = [str(APP_DIR), str(ROOT)]
    stack = Stack(args.data, env)
    try:
        if args.broker == "azurite" and not port_open(10001):
            azurite = ROOT / "node_modules" / ".bin" / "azurite"
            if not azurite.exists():
                console.print("[red]Azurite is not running and not installed: run npm ci[/]")
                return 2
            stack.start("azurite", [str(azurite), "--silent", "--skipApiVersionCheck",
                                    "--loose", "--location", str(args.data / "azurite")])
            _wait(lambda: port_open(10001), 30, "Azurite")
        return run(args, console, stack)
    except KeyboardInterrupt:
        console.print("\n[bold]Stopping[/] the worker and the web server ...")
        return 0
    finally:
        stack.stop()
        console.print("Stopped.")


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _wait(ready, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start within {timeout}s")
        time.sleep(0.2)


def run(args: argparse.Namespace, console, stack: Stack) -> int:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    console.print(f"[bold]celery-bgp demo[/]: data in {args.data}, broker {args.broker}")
    call_command("migrate", verbosity=0, interactive=False)
    password = secrets.token_urlsafe(9)
    user, _ = get_user_model().objects.get_or_create(username="admin", defaults={
        "is_staff": True, "is_superuser": True, "email": "admin@example.com"})
    user.set_password(password)
    user.save()
    python = sys.executable
    stack.start("worker", [python, "-m", "celery", "-A", "proj", "worker", "-B",
                           "-P", "threads", "-c", "4", "-l", "INFO",
                           "-n", "demo@%h", "--without-gossip", "--without-mingle"])
    stack.start("web", [python, "manage.py", "runserver", f"127.0.0.1:{args.port}",
                        "--noreload"])
    _wait(lambda: port_open(args.port), 60, "the web server")
    _wait(lambda: " ready." in (args.data / "worker.log").read_text(errors="replace"), 60,
          "the worker")

    from proj.celery import bgp
    from shop.samples import submit

    samples = submit()
    url = f"http://127.0.0.1:{args.port}/admin/"
    console.rule("[bold green]running")
    console.print(f"Admin:    [link={url}]{url}[/]   user [bold]admin[/]   password "
                  f"[bold]{password}[/]")
    console.print(f"REST:     POST http://127.0.0.1:{args.port}/bgp/commands/shop.commands."
                  "PlaceOrder (as staff)")
    console.print(f"Logs:     {args.data / 'worker.log'}, {args.data / 'web.log'}")
    console.print("Ctrl-C stops everything.")
    console.rule()
    watch(console, stack, bgp, samples)
    return 0


STYLES = {"Succeeded": "green", "Failed": "bold red", "Executing": "cyan", "Enqueued": "blue",
          "Retrying": "yellow", "Awaiting": "magenta", "Deleted": "dim", "Cancelled": "dim"}


def watch(console, stack: Stack, bgp, samples: dict[str, str]) -> None:
    """Print every state change of the sample work (and later work) until Ctrl-C."""
    labels = {job_id: label for label, job_id in samples.items()}
    seen: dict[str, tuple[str, int]] = {}
    announced = False
    while True:
        stack.check()
        for job in reversed(bgp.jobs.search(order_by=("-modified",), limit=50)):
            state, printed = seen.get(job.id, ("", 0))
            label = labels.get(job.id, job.name)
            if job.state != state:
                style = STYLES.get(job.state, "")
                console.print(f"{time.strftime('%H:%M:%S')}  {label:<45} "
                              f"[{style}]{job.state}[/]")
            logs = bgp.jobs.logs(job.id) if job.kind.value == "callable" else []
            for line in logs[printed:]:
                console.print(f"{time.strftime('%H:%M:%S')}  {label:<45} [dim]{line.message}[/]")
            seen[job.id] = (job.state, len(logs))
        states = {seen.get(job_id, ("", 0))[0] for job_id in samples.values()}
        if not announced and states <= {"Succeeded", "Failed"}:
            announced = True
            console.print("[bold green]demo ready[/]: every sample has run. Open the admin, "
                          "filter the failed jobs, requeue 'charge card' and watch it succeed.")
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
