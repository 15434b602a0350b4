"""``celery -A proj bgp recurring``: list, pause, resume, trigger (eager app, memory store;
the same calls run on real workers in tests/jobs/test_recurring_worker.py)."""
from __future__ import annotations

import json

import pytest
from celery.bin.celery import celery
from click.testing import CliRunner

from tests.apps.cli_app import bgp

APP = "tests.apps.cli_app"


def run(*args, code=0):
    result = CliRunner().invoke(celery, ["-A", APP, "bgp", "recurring", *args],
                                catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


@pytest.fixture
def name():
    bgp.jobs.store.clear()
    bgp.jobs.recurring("nightly-add", "tests.apps.jobs:add", 30, args=[1, 2])
    yield "nightly-add"
    bgp.jobs.recurring_jobs.pop("nightly-add", None)
    bgp.app.conf.beat_schedule.pop(bgp.jobs.entry_name("nightly-add"), None)


def test_list_pause_trigger_resume(name):
    listed = json.loads(run("--json"))
    row = next(r for r in listed if r["name"] == name)
    assert (row["schedule"], row["paused"], row["last_job"]) == ("every 30 seconds", False, None)
    assert "bgp:cli:purge" in [r["entry"] for r in listed]

    paused = json.loads(run("pause", name, "--by", "alice", "--json"))
    assert (paused["paused"], paused["paused_by"]) == (True, "alice")
    assert bgp.app.tasks["bgp.jobs.recurring"].apply(args=(name,)).get() is None  # skipped

    triggered = json.loads(run("trigger", name, "--json"))
    job = bgp.jobs.get(triggered["job_id"])
    assert job.state == "Succeeded" and bgp.jobs.properties(job.id)["recurring"] == name
    text = run()
    assert name in text and "paused" in text and "alice" in text and "Succeeded" in text

    assert "resumed" in run("resume", name)
    assert bgp.app.tasks["bgp.jobs.recurring"].apply(args=(name,)).get()  # runs again


def test_unknown_names_and_missing_names_exit_2(name):
    assert "not declared" in run("pause", "nope", code=2)
    assert "needs the recurring job's NAME" in run("trigger", code=2)
