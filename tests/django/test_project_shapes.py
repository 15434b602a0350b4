"""Django projects as users write them, in real processes: the CLI on the demo project,
and registrations at module level in ``proj/celery.py`` with the Django job store."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import BROKER_DB
from tests.helpers.workers import ROOT, WorkerProcess

pytestmark = pytest.mark.integration

DEMO = ROOT / "django_app"


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "BGP_DEMO"))}
    done = subprocess.run([sys.executable, *args], cwd=cwd, env={**clean, **env},
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done.stdout


def test_the_cli_works_in_the_demo_project(tmp_path):
    """``celery -A proj bgp jobs|stats|cleanup|status`` set Django up before the store."""
    env = {"BGP_DEMO_DATA": str(tmp_path), "PYTHONPATH": str(DEMO)}
    run(["manage.py", "migrate", "-v0"], DEMO, env)
    job_id = run(["manage.py", "shell", "-c",
                  "from proj.celery import bgp; from shop import jobs; "
                  "print(bgp.jobs.submit(jobs.pack_order, args=['o-1'], idle=True))"],
                 DEMO, env).strip().splitlines()[-1]
    celery = ["-m", "celery", "-A", "proj", "bgp"]
    listed = json.loads(run([*celery, "jobs", "--json"], DEMO, env))
    assert [j["id"] for j in listed["jobs"]] == [job_id]
    assert json.loads(run([*celery, "stats", "--json"], DEMO, env))["states"] == {"Idle": 1}
    assert "would purge" in run([*celery, "cleanup", "--dry-run"], DEMO, env)
    status = json.loads(run([*celery, "status", job_id, "--json"], DEMO, env))
    assert [s["name"] for s in status["history"]] == ["Created", "Idle"]


PROJECT = {
    "proj/__init__.py": "",
    "proj/settings.py": '''
        import os
        SECRET_KEY = "test"
        USE_TZ = True
        INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth",
                          "celery_bgp.contrib.django"]
        DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                                 "NAME": os.environ["SHAPE_DB"],
                                 "OPTIONS": {"timeout": 30}}}
        CELERY_BROKER_URL = os.environ["SHAPE_BROKER"]
        CELERY_BGP_JOB_STORE = "django://"
        CELERY_BGP_JOB_MODULES = ["proj.jobs"]
        CELERY_BGP_EVENT_REPOSITORY = "memory://"
        ''',
    # Everything registered at module level, next to the app, as the README shows.
    "proj/celery.py": '''
        import os
        from celery import Celery
        from celery_bgp import BackgroundProcessing
        from celery_bgp.jobs import Deleted

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
        app = Celery("proj")
        app.config_from_object("django.conf:settings", namespace="CELERY")
        bgp = BackgroundProcessing(app)

        @bgp.jobs.register_middleware("audit")
        def audit(context, call_next):
            context.info(f"audit by {context.input['by']}")
            return call_next(context)

        def timing(context, call_next):
            context.set_property("wrapped", True)
            return call_next(context)

        bgp.jobs.use(timing)

        @bgp.jobs.election_handler(priority=10)
        def no_negatives(election):
            args = election.job.args
            if election.candidate.name == "Executing" and args and args[0] < 0:
                return Deleted(reason="negative")
            return None

        @bgp.jobs.on_state(states=["Succeeded"])
        def seen(applied):
            pass

        bgp.jobs.recurring("hourly-add", "proj.jobs:add", 3600, args=[1, 1])
        ''',
    "proj/jobs.py": '''
        def add(a, b):
            return a + b
        ''',
}


def test_registrations_at_module_level_work_with_the_django_store(tmp_path, redis_base):
    for name, text in PROJECT.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    env = {"SHAPE_DB": str(tmp_path / "db.sqlite3"), "SHAPE_BROKER": f"{redis_base}/{BROKER_DB}",
           "DJANGO_SETTINGS_MODULE": "proj.settings", "PYTHONPATH": str(tmp_path)}
    run(["-m", "django", "migrate", "-v0"], tmp_path, env)
    script = textwrap.dedent('''
        import django, sys, time
        django.setup()
        from proj.celery import bgp
        from proj import jobs
        ok = bgp.jobs.submit(jobs.add, args=[2, 3], middleware=[("audit", {"by": "ops"})])
        vetoed = bgp.jobs.submit(jobs.add, args=[-1, 3])
        done = bgp.jobs.wait(ok, timeout=60)
        print(done.state, done.result, [l.message for l in bgp.jobs.logs(ok)],
              bgp.jobs.store.properties(ok), bgp.jobs.wait(vetoed, timeout=60).state)
        ''')
    with WorkerProcess("proj.celery", {**env, "BGP_TEST_QUEUE": "celery"}, ["celery"],
                       cwd=tmp_path) as worker:
        started = time.monotonic()
        out = run(["-c", script], tmp_path, env, timeout=120)
        assert time.monotonic() - started < 60, worker.log()[-3000:]
    assert out.split("\n")[-2] == (
        "Succeeded 5 ['audit by ops'] {'wrapped': True} Deleted")
