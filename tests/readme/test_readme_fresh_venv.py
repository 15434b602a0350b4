"""README.rst as a newcomer meets it: a fresh virtualenv, this checkout installed there
with only the extras the README names (``pip install "<checkout>[extras]"``, regular, not
editable, so packaging is tested too), and each tested section's code run as written.

- Quickstart: ``proj.py`` from the README, ``celery -A proj worker`` from the venv, and
  the ``pycon`` session run by doctest in the venv's python: its outputs must match.
- Django: ``django-admin startproject proj``, the README's settings appended,
  ``proj/celery.py`` and the Jobs section's ``proj/jobs.py`` written from the README,
  ``manage.py migrate`` (the project's own SQLite file), the worker started as the
  README says.
- Jobs: the Jobs section's shell snippet run in ``manage.py shell`` against that
  worker, then what its comments promise is checked; and its plain-Celery SQLAlchemy
  example (``tasks.py``, ``celery -A tasks bgp db upgrade`` on an SQLite file, the
  worker, the ``pycon`` session by doctest) in a venv of its own, without Django.

Every code block is read from README.rst (parsed with docutils), never copied here. One
substitution: the README's Redis (``redis://127.0.0.1:6379``, the user's) becomes a
private ``redis-server`` on a free port, so the shared server is never touched. One venv
per extras combination per session; pip's cache is used. Under ``CI=true`` nothing
skips: a missing ``redis-server`` or a failed ``pip install`` fails.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers.redis_server import RedisServer
from tests.helpers.servers import IN_CI
from tests.helpers.workers import ROOT

pytestmark = pytest.mark.integration

README = ROOT / "README.rst"
#: The Redis the README's code names: the user's. The tests substitute a private server.
README_REDIS = "redis://127.0.0.1:6379"
#: How the README tells users to install the package (the extras in brackets).
PIP_INSTALL = re.compile(r'pip install "celery-bgp\[([\w,-]+)\]"')
#: pip output that means "no network", the one pip failure a local run may skip.
OFFLINE = ("NewConnectionError", "Temporary failure in name resolution",
           "Network is unreachable", "Failed to establish a new connection")


def unavailable(message: str) -> None:
    """Skip locally; under CI, fail (nothing may skip there)."""
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


# -- README.rst ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Section:
    title: str
    text: str  # prose and code, as docutils reads it
    blocks: tuple[tuple[str, str], ...]  # (language, code) of each code block, in order

    def code(self, language: str) -> list[str]:
        return [code for lang, code in self.blocks if lang == language]

    def file(self, path: str) -> str:
        """The code block that starts with the comment ``# <path>``."""
        found = [code for _, code in self.blocks if code.startswith(f"# {path}\n")]
        assert len(found) == 1, f"README {self.title}: no single block starting '# {path}'"
        return found[0]

    def extras(self) -> str:
        """The extras of the section's ``pip install "celery-bgp[...]"``."""
        found = PIP_INSTALL.findall(self.text)
        assert len(found) == 1, f"README {self.title}: no single pip install line: {found}"
        return found[0]


@functools.cache
def readme() -> dict[str, Section]:
    """README.rst's sections by title (docutils: the README is the source of truth)."""
    from docutils import nodes
    from docutils.core import publish_doctree

    doctree = publish_doctree(
        README.read_text(), source_path=str(README),
        settings_overrides={"report_level": 5, "halt_level": 5, "syntax_highlight": "none",
                            "file_insertion_enabled": False, "raw_enabled": False},
    )
    sections = {}
    for node in doctree.findall(nodes.section):
        title = node.next_node(nodes.title).astext()
        blocks = tuple(
            (child["classes"][-1], child.astext() + "\n")
            for child in node.children
            if isinstance(child, nodes.literal_block) and "code" in child["classes"]
        )
        sections[title] = Section(title, node.astext(), blocks)
    return sections


def with_private_redis(code: str, redis: RedisServer) -> str:
    """The README's code with its Redis URLs pointed at the test's private server."""
    assert README_REDIS in code, f"the README's code no longer names {README_REDIS}"
    code = code.replace(README_REDIS, redis.url)
    assert ":6379" not in code, code
    return code


# -- a fresh virtualenv with this checkout installed ------------------------------------


@dataclasses.dataclass
class Venv:
    path: Path

    def bin(self, name: str) -> str:
        return str(self.path / "bin" / name)

    @property
    def env(self) -> dict[str, str]:
        """A newcomer's environment: nothing of the test run's Python, Django or Celery."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PYTHON", "VIRTUAL_ENV", "DJANGO_", "CELERY_", "BGP_",
                                    "PYTEST_", "C_FORCE_ROOT"))}
        env["VIRTUAL_ENV"] = str(self.path)
        env["PATH"] = os.pathsep.join([str(self.path / "bin"), env.get("PATH", "")])
        env["C_FORCE_ROOT"] = "1"  # CI runs as root; Celery asks for this then
        return env

    def run(self, args: list[str], cwd: Path, timeout: float = 120, **kw) -> str:
        """Run a command with this venv first on PATH; fail with its output if it fails."""
        done = subprocess.run(args, cwd=cwd, env=self.env, capture_output=True, text=True,
                              timeout=timeout, **kw)
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"{shlex.join(args)} exited {done.returncode}:\n{output}"
        return output


def copy_checkout(dest: Path) -> Path:
    """The checkout's files (tracked, and new ones not ignored) in ``dest``.

    pip builds a local project in place; a copy keeps ``build/`` and ``*.egg-info`` out
    of the developer's tree, and builds from what a clone would hold (with local edits).
    """
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                                 "--exclude-standard"], cwd=ROOT, capture_output=True)
    except OSError:  # no git
        listed = subprocess.CompletedProcess([], 1)
    if listed.returncode != 0:  # not a git checkout: everything but the usual litter
        shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(
            ".git", "node_modules", ".tox", ".venv*", "venv", ".ci", "build", "dist",
            "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "_build", "*.sqlite3"))
        return dest
    for name in listed.stdout.decode().split("\0"):
        source = ROOT / name
        if name and source.is_file():  # a tracked file deleted locally is skipped
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


class FreshVenvs:
    """One venv per extras combination, each with ``pip install "<checkout>[extras]"``.

    Installs run in the background, several at once (they wait on the network and the
    disk more than on the CPU); each builds from its own copy of the checkout.
    """

    def __init__(self, base: Path) -> None:
        self.base = base
        self.started: dict[str, tuple[Venv, subprocess.Popen, Path]] = {}

    def start(self, extras: str) -> None:
        if extras in self.started:
            return
        root = self.base / extras.replace(",", "-")
        source = copy_checkout(root / "celery-bgp")
        venv = Venv(root / "venv")
        create = [sys.executable, "-m", "venv", str(venv.path)]
        install = [venv.bin("python"), "-m", "pip", "install", "--disable-pip-version-check",
                   "--no-input", "--no-compile", f"{source}[{extras}]"]
        log = root / "install.log"
        with log.open("w") as out:
            proc = subprocess.Popen(["/bin/sh", "-c", f"{shlex.join(create)} && "
                                     f"{shlex.join(install)}"], env=venv.env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.started[extras] = (venv, proc, log)

    def __call__(self, extras: str) -> Venv:
        """The venv of ``extras``, once its install finished (fails if it did not)."""
        self.start(extras)
        venv, proc, log = self.started[extras]
        try:
            returncode = proc.wait(600)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            returncode = proc.wait()
        if returncode != 0:
            output = log.read_text(errors="replace")
            message = f'pip install "celery-bgp[{extras}]" failed:\n{output}'
            if any(sign in output for sign in OFFLINE):
                unavailable(message)
            pytest.fail(message, pytrace=False)
        return venv

    def close(self) -> None:
        for venv, proc, _ in self.started.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            shutil.rmtree(venv.path, ignore_errors=True)  # a few hundred MB each


def start_installs(session: pytest.Session) -> FreshVenvs | None:
    """Start the installs the selected tests will need, side by side, in the background.

    Called when collection ends (tests/readme/conftest.py), so they run while the rest
    of the suite does instead of after it: they wait on pip's cache and the disk.
    """
    wanted = {name for item in session.items for name in item.fixturenames}
    sections = [title for fixture, title in (("quickstart_venv", "Install"),
                                             ("django_project", "Django"),
                                             ("sqlalchemy_venv", "Jobs"))
                if fixture in wanted]
    if not sections:
        return None
    venvs = FreshVenvs(session.config._tmp_path_factory.mktemp("fresh"))
    for title in sections:
        venvs.start(readme()[title].extras())
    return venvs


@pytest.fixture(scope="session")
def fresh_venv(request, tmp_path_factory):
    """``fresh_venv("redis")``: a fresh venv with ``pip install "<checkout>[redis]"``."""
    venvs = getattr(request.config, "_bgp_fresh_venvs", None)
    if venvs is None:
        venvs = FreshVenvs(tmp_path_factory.mktemp("fresh"))
    yield venvs
    venvs.close()


def private_redis(directory: Path) -> RedisServer:
    """A ``redis-server`` of the test's own on a free port (not the shared 6379)."""
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed (apt-get install redis-server)")
    return RedisServer(directory, durable=False).start()


class Worker:
    """The README's ``celery -A proj worker -l INFO``, run from a venv in ``cwd``."""

    def __init__(self, venv: Venv, cwd: Path, command: str) -> None:
        args = shlex.split(command)
        assert args[:2] == ["celery", "-A"], command
        self.args = [venv.bin("celery"), *args[1:], "-c", "2"]  # -c: a shared CI machine
        self.venv, self.cwd = venv, cwd
        self.log_path = cwd / "worker.log"
        self.proc: subprocess.Popen | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout: float = 60) -> Worker:
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(self.args, cwd=self.cwd, env=self.venv.env,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while " ready." not in self.log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"the README's worker did not start:\n{self.log()}", pytrace=False)
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def worker_command(section: Section) -> str:
    found = re.findall(r"celery -A proj worker(?: -l [A-Z]+)?", section.text)
    assert found, f"README {section.title}: no 'celery -A proj worker' command"
    return found[0]


# -- Quickstart ------------------------------------------------------------------------


@pytest.fixture
def quickstart_venv(fresh_venv) -> Venv:
    """What the Install section says: ``pip install "celery-bgp[redis]"``."""
    return fresh_venv(readme()["Install"].extras())


def test_quickstart(quickstart_venv: Venv, tmp_path: Path):
    """proj.py as the README gives it, its worker, and the REPL session's outputs."""
    section, venv = readme()["Quickstart"], quickstart_venv
    assert "Save this as proj.py" in section.text
    (proj,), (session,) = section.code("python"), section.code("pycon")
    redis = private_redis(tmp_path / "redis")
    try:
        (tmp_path / "proj.py").write_text(with_private_redis(proj, redis))
        (tmp_path / "session.txt").write_text(session)
        with Worker(venv, tmp_path, worker_command(section)) as worker:
            done = subprocess.run(
                [venv.bin("python"), "-m", "doctest", "-v", "session.txt"], cwd=tmp_path,
                env=venv.env, capture_output=True, text=True, timeout=120,
            )
            examples = session.count("\n>>> ") + session.startswith(">>> ")
            assert done.returncode == 0, done.stdout + done.stderr + worker.log()
            assert f"{examples} passed and 0 failed" in done.stdout, done.stdout
    finally:
        redis.stop()


# -- Django and Jobs -------------------------------------------------------------------


@dataclasses.dataclass
class DjangoProject:
    venv: Venv
    path: Path
    worker: Worker

    def manage(self, *args: str, timeout: float = 120) -> str:
        return self.venv.run([self.venv.bin("python"), "manage.py", *args], self.path,
                             timeout=timeout)

    def shell(self, code: str, timeout: float = 120) -> str:
        """Run ``code`` in ``manage.py shell`` (from a file, for readable tracebacks)."""
        script = self.path / f"shell_{uuid.uuid4().hex[:8]}.py"
        script.write_text(code)
        try:
            return self.manage("shell", "-c",
                               f"import runpy; runpy.run_path({script.name!r}, run_name='shell')",
                               timeout=timeout)
        except AssertionError as failure:
            raise AssertionError(f"{failure}\n-- worker log --\n{self.worker.log()}") from None


@pytest.fixture(scope="session")
def django_project(fresh_venv, tmp_path_factory):
    """The Django section's project, built as it says, with its worker running."""
    django, jobs = readme()["Django"], readme()["Jobs"]
    venv = fresh_venv(django.extras())
    root = tmp_path_factory.mktemp("readme-django")
    assert "django-admin startproject proj" in django.text
    venv.run(shlex.split("django-admin startproject proj"), root)
    path = root / "proj"
    redis = private_redis(root / "redis")
    project = None
    try:
        settings_block = next(c for c in django.code("python") if "INSTALLED_APPS" in c)
        with (path / "proj" / "settings.py").open("a") as settings:
            settings.write(f"\n{with_private_redis(settings_block, redis)}")
        # The block's last line says what urls.py gets; startproject's urls.py lacks include.
        (url,) = re.findall(r"^# urls\.py: (.+)$", settings_block, re.MULTILINE)
        with (path / "proj" / "urls.py").open("a") as urls:
            urls.write(f"\nfrom django.urls import include\n\nurlpatterns += [{url}]\n")
        (path / "proj" / "celery.py").write_text(django.file("proj/celery.py"))
        (path / "proj" / "jobs.py").write_text(jobs.file("proj/jobs.py"))
        project = DjangoProject(venv, path, Worker(venv, path, worker_command(django)))
        assert "manage.py migrate" in django.text
        project.manage("migrate")
        project.worker.start()
        yield project
    finally:
        if project is not None:
            project.worker.stop()
        redis.stop()


def test_django_section(django_project: DjangoProject):
    """The settings and proj/celery.py as the README gives them: Django's checks pass,
    the worker runs celery-bgp's tasks, the admin and the REST URLs answer."""
    django_project.manage("check")
    assert "bgp.job" in django_project.worker.log()  # the [tasks] list of the worker banner
    output = django_project.shell(textwrap.dedent("""
        import uuid

        from django.contrib.auth.models import User
        from django.test import Client
        from django.urls import reverse

        import proj.celery
        from celery_bgp.contrib.django.rest import get_bgp
        from celery_bgp.contrib.django.store import DjangoJobStore

        assert get_bgp() is proj.celery.bgp                     # CELERY_BGP_INSTANCE
        assert isinstance(proj.celery.bgp.jobs.store, DjangoJobStore)
        staff = User.objects.create_superuser(f"readme-{uuid.uuid4().hex[:6]}")
        client = Client(HTTP_HOST="localhost")
        client.force_login(staff)
        assert client.get("/bgp/openapi.json").json()["openapi"].startswith("3.")
        page = client.get(reverse("admin:celery_bgp_job_changelist"))
        assert page.status_code == 200, page
        print("README django: checked")
    """))
    assert "README django: checked" in output


def test_jobs_section(django_project: DjangoProject):
    """The Jobs snippet, as written, in ``manage.py shell``; then what its comments say."""
    (snippet,) = [c for c in readme()["Jobs"].code("python") if not c.startswith("# ")]
    (django_project.path / "readme_jobs.py").write_text(snippet)
    output = django_project.shell(textwrap.dedent("""
        import runpy

        from celery_bgp.jobs import P, Q

        ns = runpy.run_path("readme_jobs.py")   # the README's snippet, as written
        bgp, invoice, report, later = ns["bgp"], ns["invoice"], ns["report"], ns["later"]

        assert bgp.jobs.wait(invoice).result == "invoice 42 sent"
        # requeued at the end of the snippet: it runs again, with its middleware
        job = bgp.jobs.wait(report, states=["Succeeded"], timeout=30)
        assert job.result == {"month": "2026-10", "rows": 42}, job
        history = [state.name for state in bgp.jobs.history(report)]
        assert history.count("Succeeded") == 2, history
        logs = [log.message for log in bgp.jobs.logs(report)]
        assert logs[:2] == ["audit by ops", "building 2026-10"], logs  # "audit" on the worker
        found = bgp.jobs.search(Q(state="Succeeded", queue__in=["celery"])
                                & (P("tenant") == "acme"))
        assert [job.id for job in found] == [report], found
        (mail,) = bgp.jobs.search(Q(name="proj.jobs:email_report"))
        assert bgp.jobs.wait(mail.id).result == "report 2026-10 sent"
        assert [s.name for s in bgp.jobs.history(later)][-2:] == ["Cancelled", "Deleted"]
        print("README jobs: checked")
    """))
    assert "README jobs: checked" in output


# -- Jobs without Django (the SQLAlchemy store) ----------------------------------------


@pytest.fixture
def sqlalchemy_venv(fresh_venv) -> Venv:
    """What the Jobs section says for plain Celery: ``pip install "celery-bgp[...]"``."""
    return fresh_venv(readme()["Jobs"].extras())


def test_jobs_without_django(sqlalchemy_venv: Venv, tmp_path: Path):
    """tasks.py as the README gives it, its tables made by the CLI, its worker, and the
    REPL session's outputs, with Redis and an SQLite file only."""
    section, venv = readme()["Jobs"], sqlalchemy_venv
    (session,) = section.code("pycon")
    migrate = "celery -A tasks bgp db upgrade"
    (worker,) = re.findall(r"celery -A tasks worker(?: -l [A-Z]+)?", section.text)
    assert migrate in section.text
    redis = private_redis(tmp_path / "redis")
    try:
        (tmp_path / "tasks.py").write_text(with_private_redis(section.file("tasks.py"), redis))
        venv.run([venv.bin("celery"), *shlex.split(migrate)[1:]], tmp_path)
        assert (tmp_path / "jobs.db").exists()
        (tmp_path / "session.txt").write_text(session)
        with Worker(venv, tmp_path, worker) as running:
            done = subprocess.run(
                [venv.bin("python"), "-m", "doctest", "-v", "session.txt"], cwd=tmp_path,
                env=venv.env, capture_output=True, text=True, timeout=120,
            )
            examples = session.count("\n>>> ") + session.startswith(">>> ")
            assert done.returncode == 0, done.stdout + done.stderr + running.log()
            assert f"{examples} passed and 0 failed" in done.stdout, done.stdout
        imported = venv.run([venv.bin("python"), "-c",
                             "import importlib.util as u; print(u.find_spec('django'))"],
                            tmp_path)
        assert imported.strip() == "None"  # Django was never installed
    finally:
        redis.stop()
