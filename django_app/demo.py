#!/usr/bin/env python3
"""The one-command demo: ``python3 django_app/demo.py``.

On a machine with only Python it creates ``.venv-demo`` and installs celery-bgp's
dependencies there (once; celery-bgp itself runs from this checkout), then: migrates an
SQLite database, creates an admin login (printed), starts a real ``celery worker``
and ``celery beat`` on an embedded broker that needs no server (kombu's filesystem transport),
starts the Django admin on 127.0.0.1, submits every kind of sample work, and shows its
progress here. Ctrl-C stops everything.

``--broker redis|rabbitmq|azurite`` uses a server on 127.0.0.1 instead (Azurite is
started from ``node_modules`` if it is not running). Run again on the same ``--data``
folder, it keeps the earlier runs' jobs (the admin lists them) and shows only what
happens from then on; ``--fresh`` starts from an empty folder.
"""
from __future__ import annotations

import argparse
import configparser
import importlib
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent
ROOT = APP_DIR.parent
VENV = ROOT / ".venv-demo"
#: What the demo imports, beside celery_bgp (this checkout): module -> setup.cfg extra.
REQUIRED = {"celery": None, "pydantic": None, "rich": None, "django": "django",
            "django_celery_results": "django", "django_celery_beat": "django",
            "redis": "redis"}
AZURE = {"azure.storage.queue": "azure", "azure.data.tables": "azure"}


def _missing(modules: dict[str, str | None]) -> list[str]:
    missing = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    return missing


def requirements(extras: set[str]) -> list[str]:
    """celery-bgp's dependencies and those of ``extras``, as setup.cfg lists them."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    sections = [config["options"]["install_requires"]]
    sections += [config["options.extras_require"][extra] for extra in sorted(extras)]
    return [line.strip() for text in sections for line in text.splitlines() if line.strip()]


def ensure_environment(argv: list[str]) -> None:
    """Run inside ``.venv-demo`` (created on first use) unless the dependencies are here.

    The venv gets celery-bgp's dependencies only, when one is missing (the first run,
    or the first ``--broker azurite``); celery-bgp runs from this checkout (on
    ``sys.path`` and the processes' ``PYTHONPATH``), so nothing is built from it: no
    setuptools build, no editable install (and none of their warnings) on any run.
    """
    sys.path[:0] = [str(APP_DIR), str(ROOT)]
    needed = {**REQUIRED, **(AZURE if "azurite" in argv else {})}
    missing = _missing(needed)
    if not missing:
        return
    python = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() != VENV.resolve():
        if not python.exists():
            print(f"Creating {VENV} (first run only) ...", flush=True)
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
            subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--upgrade",
                            "pip"], check=True)
        os.execv(str(python), [str(python), __file__, *argv])
    print(f"Installing the demo's dependencies into {VENV} ...", flush=True)
    extras = {extra for module, extra in needed.items() if extra}
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                    *requirements(extras)], check=True)
    importlib.invalidate_caches()
    if _missing(needed):
        sys.exit(f"the demo environment {VENV} lacks {_missing(needed)}; delete it and "
                 "try again")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Stack:
    """The worker, beat, the web server (and Azurite): started, watched, stopped."""

    def __init__(self, data: Path, env: dict[str, str]) -> None:
        self.data, self.env = data, env
        self.procs: dict[str, subprocess.Popen] = {}
        #: Where this run's part of each log starts (earlier runs' output stays above).
        self.offsets: dict[str, int] = {}

    def start(self, name: str, cmd: list[str]) -> None:
        log = open(self.data / f"{name}.log", "ab")  # noqa: SIM115 - closed by the OS at exit
        log.write(f"\n===== demo run of {time.strftime('%Y-%m-%d %H:%M:%S')} =====\n".encode())
        log.flush()
        self.offsets[name] = log.tell()
        self.procs[name] = subprocess.Popen(cmd, cwd=APP_DIR, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def log(self, name: str) -> str:
        """What ``name`` printed in this run (not the earlier runs' lines of its log)."""
        with open(self.data / f"{name}.log", "rb") as log:
            log.seek(self.offsets.get(name, 0))
            return log.read().decode(errors="replace")

    def check(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = self.log(name)[-3000:]
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
        console.print("\n[bold]Stopping[/] the worker, beat and the web server ...")
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
    from proj.celery import bgp

    since = datetime.now(timezone.utc)
    earlier = bgp.jobs.count()
    python = sys.executable
    stack.start("worker", [python, "-m", "celery", "-A", "proj", "worker",
                           "-P", "threads", "-c", "4", "-l", "INFO",
                           "-n", "demo@%h", "--without-gossip", "--without-mingle"])
    # Beat in its own process, as in production: `worker -B` forks it from a worker
    # whose threads (pool, daemons, event writer) may hold locks at that moment, and a
    # beat forked that way can hang before it stores or sends anything.
    stack.start("beat", [python, "-m", "celery", "-A", "proj", "beat", "-l", "INFO"])
    stack.start("web", [python, "manage.py", "runserver", f"127.0.0.1:{args.port}",
                        "--noreload"])
    _wait(lambda: port_open(args.port), 60, "the web server")
    _wait(lambda: " ready." in stack.log("worker"), 60, "the worker")

    from shop.samples import submit

    samples = submit()
    base = f"http://127.0.0.1:{args.port}"
    url = f"{base}/admin/"
    console.rule("[bold green]running")
    console.print(f"Admin:    [link={url}]{url}[/]   user [bold]admin[/]   password "
                  f"[bold]{password}[/]")
    console.print(f"REST:     POST {base}/bgp/commands/shop.commands.PlaceOrder", soft_wrap=True)
    console.print(f"          body {PLACE_ORDER}, as staff; the API: {base}/bgp/openapi.json",
                  markup=False, soft_wrap=True)
    console.print("          With curl: log in (the login page sets the CSRF cookie), then "
                  "POST with the session cookie and the X-CSRFToken header:", soft_wrap=True)
    for line in rest_hint(base, password, args.data / "curl-cookies.txt"):
        console.print(f"  {line}", markup=False, soft_wrap=True)
    console.print("          then GET the Location it answers (curl -b, same cookie file): "
                  "200 while it runs, 303 to the output.", soft_wrap=True)
    console.print(f"Daemon:   stock-watcher, kept alive by the worker: {url}celery_bgp/daemon/ "
                  "(select it, then the action 'Stop selected daemons' or 'Start ...')",
                  soft_wrap=True)
    console.print(f"Logs:     {args.data / 'worker.log'}, {args.data / 'web.log'}")
    if earlier:
        console.print(f"Earlier:  {earlier} jobs of earlier runs are in {args.data} (the "
                      "admin lists them); below is only what happens from now on "
                      "(--fresh starts empty).", soft_wrap=True)
    console.print("Ctrl-C stops everything.")
    console.rule()
    watch(console, stack, bgp, samples, since)
    return 0


#: The body of the REST hint's command.
PLACE_ORDER = '{"sku": "kettle", "quantity": 2}'


def rest_hint(base: str, password: str, jar: Path) -> list[str]:
    """Shell lines: log in as admin (the login page sets the CSRF cookie, logging in the
    session cookie), then POST a PlaceOrder with both cookies and the X-CSRFToken header."""
    cookies = shlex.quote(str(jar))
    token = f"$(awk '$6 == \"csrftoken\" {{print $7}}' {cookies})"
    return [
        f"curl -s -c {cookies} -o /dev/null {base}/admin/login/",
        f"curl -s -b {cookies} -c {cookies} -o /dev/null -d username=admin "
        f"-d password={shlex.quote(password)} -d csrfmiddlewaretoken={token} "
        f"{base}/admin/login/",
        f'curl -s -i -b {cookies} -H "X-CSRFToken: {token}" '
        f"-H 'Content-Type: application/json' -d '{PLACE_ORDER}' "
        f"{base}/bgp/commands/shop.commands.PlaceOrder",
    ]


STYLES = {"Succeeded": "green", "Failed": "bold red", "Executing": "cyan", "Enqueued": "blue",
          "Retrying": "yellow", "Awaiting": "magenta", "Deleted": "dim", "Cancelled": "dim"}


DAEMON_STYLES = {"running": "green", "faulted": "red", "stopped": "yellow"}


def watch(console, stack: Stack, bgp, samples: dict[str, str], since: datetime) -> None:
    """Print every state change and log line of the sample work (and later work) from
    ``since`` on, until Ctrl-C. Jobs of earlier runs (a ``--data`` folder used before)
    are not replayed: only what they do from now on is shown."""
    labels = {job_id: label for label, job_id in samples.items()}
    seen: dict[str, tuple[str, int]] = {}
    daemons: dict[str, str] = {}
    announced = False
    while True:
        stack.check()
        for job in reversed(bgp.jobs.search(order_by=("-modified",), limit=50)):
            logs = bgp.jobs.logs(job.id) if job.kind.value == "callable" else []
            if job.id not in seen:
                if job.modified < since:  # an earlier run's, unchanged since: not news
                    seen[job.id] = (job.state, len(logs))
                    continue
                seen[job.id] = ("", sum(1 for line in logs if line.time < since))
            state, printed = seen[job.id]
            label = labels.get(job.id, job.name)
            if job.state != state:
                style = STYLES.get(job.state, "")
                console.print(f"{time.strftime('%H:%M:%S')}  {label:<45} "
                              f"[{style}]{job.state}[/]")
            for line in logs[printed:]:
                console.print(f"{time.strftime('%H:%M:%S')}  {label:<45} [dim]{line.message}[/]")
            seen[job.id] = (job.state, len(logs))
        for daemon in bgp.daemons.all():
            shown = f"{daemon.status} on {daemon.worker}" if daemon.worker else daemon.status
            if daemons.get(daemon.id) != shown:
                daemons[daemon.id] = shown
                style = DAEMON_STYLES.get(daemon.status, "")
                console.print(f"{time.strftime('%H:%M:%S')}  {'daemon ' + daemon.name:<45} "
                              f"[{style}]{shown}[/]")
        states = {seen.get(job_id, ("", 0))[0] for job_id in samples.values()}
        if not announced and states <= {"Succeeded", "Failed"}:
            announced = True
            console.print("[bold green]demo ready[/]: every sample has run. Open the admin, "
                          "filter the failed jobs, requeue 'charge card' and watch it succeed.")
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
