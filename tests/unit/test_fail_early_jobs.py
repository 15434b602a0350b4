"""Mistakes with jobs fail where they are made, and the error names the fix."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid

import pytest
from celery import Celery

from celery_bgp import BackgroundProcessing, ImproperlyConfigured
from celery_bgp.jobs import InvalidJobArguments, JobNotAllowed
from celery_bgp.jobs.memory import MemoryJobStore
from tests.apps import jobs as J
from tests.jobs.test_engine import make


def app() -> Celery:
    return Celery(f"early-{uuid.uuid4().hex[:6]}", broker="memory://", set_as_current=False)


def test_an_unknown_job_store_scheme_fails_at_construction_naming_the_known_ones():
    with pytest.raises(ImproperlyConfigured, match=r"'djang://'.*django://, memory://"):
        BackgroundProcessing(app(), job_store="djang://")


def test_an_unknown_event_repository_scheme_fails_at_construction_naming_the_known_ones():
    with pytest.raises(ImproperlyConfigured, match=r"'reddis'; known: .*redis"):
        BackgroundProcessing(app(), event_repository="reddis://127.0.0.1/1")


def test_a_store_of_the_wrong_type_is_a_type_error():
    with pytest.raises(TypeError, match="job_store must be a URL, a JobStore"):
        BackgroundProcessing(app(), job_store=42)
    with pytest.raises(TypeError, match="event_repository must be a URL"):
        BackgroundProcessing(app(), event_repository=42)


def test_a_mistyped_store_in_the_celery_settings_fails_at_first_use():
    celery = app()
    celery.conf.bgp_job_store = "djnago://"
    bgp = BackgroundProcessing(celery)
    with pytest.raises(ImproperlyConfigured, match="djnago"):
        bgp.settings  # noqa: B018 - resolving the settings is the point


def test_arguments_that_do_not_bind_fail_at_submit_and_store_nothing():
    store = MemoryJobStore()
    bgp = make(store=store)
    with pytest.raises(InvalidJobArguments, match=r"add\(a: int, b: int\).*missing a required"):
        bgp.jobs.enqueue(J.add, 1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'c'"):
        bgp.jobs.submit(J.add, args=[1, 2], kwargs={"c": 3})
    assert bgp.jobs.count() == 0
    # Injected parameters are not arguments: the context comes from the worker.
    bgp.jobs.enqueue(J.uses_context, "label")


def test_a_stored_job_whose_arguments_no_longer_bind_fails_at_once_without_retries():
    store = MemoryJobStore()
    bgp = make(store=store, job_retry={"max_attempts": 5, "delays": [0]})
    job_id = bgp.jobs.submit(J.add, args=[1, 2], idle=True)
    store._jobs[job_id].job.args = [1]  # a row written by an older deploy, say
    bgp.jobs.requeue(job_id)
    job = bgp.jobs.get(job_id)
    assert (job.state, job.attempt) == ("Failed", 1)
    assert bgp.jobs.history(job_id)[-1].data["exception_type"].endswith("InvalidJobArguments")


def test_job_not_allowed_says_where_to_add_the_module():
    bgp = make(job_modules=["tests.apps.jobs"])
    with pytest.raises(JobNotAllowed, match=r"job_modules=.*CELERY_BGP_JOB_MODULES"):
        bgp.jobs.enqueue("tests.unit.test_misc:nothing")


def test_a_celery_worker_refuses_a_store_it_cannot_share(tmp_path):
    (tmp_path / "memproj.py").write_text(textwrap.dedent('''
        from celery import Celery
        from celery_bgp import BackgroundProcessing

        app = Celery("memproj", broker="memory://")
        bgp = BackgroundProcessing(app, job_store="memory://", job_modules=["memproj"])
        '''))
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "memproj", "worker", "-P", "solo"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "C_FORCE_ROOT": "1", "PYTHONPATH": str(tmp_path)})
    assert done.returncode != 0
    assert "job_store='memory://' keeps jobs in one process's memory" in done.stderr
    assert "job_store='django://'" in done.stderr
