"""``celery -A proj bgp ...`` through Celery's own command line group."""
from __future__ import annotations

import json

import pytest
from celery.bin.celery import celery
from click.testing import CliRunner

from celery_bgp.jobs import Q
from tests.apps import jobs as J
from tests.apps.cli_app import bgp
from tests.apps.commands import Echo

APP = "tests.apps.cli_app"


def run(*args, code=0):
    result = CliRunner().invoke(celery, ["-A", APP, "bgp", *args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def run_json(*args, code=0):
    return json.loads(run(*args, "--json", code=code))


@pytest.fixture(autouse=True)
def clean_store():
    bgp.jobs.store.clear()
    yield


@pytest.fixture
def population():
    ok = bgp.jobs.submit(J.add, args=[1, 2], properties={"tenant": "acme", "amount": 12})
    bad = bgp.jobs.submit(J.fail, args=["no"], properties={"tenant": "globex", "amount": 3})
    idle = bgp.jobs.submit(J.add, args=[5, 5], queue="later", idle=True)
    return ok, bad, idle


def test_jobs_lists_and_filters(population):
    ok, bad, idle = population
    assert run_json("jobs")["total"] == 3
    assert [j["id"] for j in run_json("jobs", "--state", "Failed")["jobs"]] == [bad]
    assert [j["id"] for j in run_json("jobs", "--prop", "amount>10")["jobs"]] == [ok]
    assert [j["id"] for j in run_json("jobs", "--prop", "tenant~glo*")["jobs"]] == [bad]
    assert [j["id"] for j in run_json("jobs", "--queue", "later")["jobs"]] == [idle]
    assert "Jobs (3 of 3)" in run("jobs")


def test_bad_filters_exit_2(population):
    assert "cannot order by" in run("jobs", "--order", "password", code=2)
    run("jobs", "--prop", "no-operator", code=2)


def test_status_of_a_job_and_of_a_command(population):
    ok, _, _ = population
    data = run_json("status", ok)
    assert data["job"]["state"] == "Succeeded"
    assert [s["name"] for s in data["history"]] == ["Created", "Enqueued", "Executing",
                                                    "Succeeded"]
    command = Echo(text="hi")
    bgp.dispatch(command)
    data = run_json("status", command.id)
    assert [e["status"] for e in data["events"]] == ["PROCESSED", "PROCESSING", "DISPATCHED"]
    assert data["job"]["kind"] == "command"
    assert "State history" in run("status", ok)
    run("status", "no-such-id", code=1)


def test_requeue_by_id_and_in_bulk(population):
    ok, bad, _ = population
    assert run_json("requeue", ok)["done"] == [ok]
    assert len(bgp.jobs.history(ok)) == 7  # ran again
    result = run_json("requeue", "--state", "Failed", "--yes")
    assert result["done"] == [bad]
    assert bgp.jobs.count(Q(state="Failed")) == 1  # failed again, its policy allows 1 attempt
    assert "requeue: 1 done" in run("requeue", bad)
    run("requeue", code=2)  # neither ids nor a selection


def test_requeue_reports_failures_and_exits_1(population):
    result = run_json("requeue", "missing-id", code=1)
    assert "JobNotFound" in result["failed"]["missing-id"]


def test_cancel_stats_and_cleanup(population):
    _, _, idle = population
    assert run_json("cancel", idle)["done"] == [idle]
    assert bgp.jobs.get(idle).state == "Cancelled"
    stats = run_json("stats")
    assert stats["states"] == {"Succeeded": 1, "Failed": 1, "Cancelled": 1}
    assert stats["finished_since"] == 2
    assert run_json("cleanup", "--dry-run")["would_purge"] == 0
    assert run_json("cleanup") == {"recovered": 0, "purged": 0}
    assert "Jobs per state" in run("stats")


def test_cancel_of_a_running_job_says_requested_until_it_stops(population):
    from celery_bgp.jobs import Cancelled, Executing

    _, _, idle = population
    running = bgp.jobs.submit(J.add, args=[1, 1], idle=True)
    bgp.jobs.store.transition(running, Executing(worker="w@test", execution_id="e1").record())
    assert run_json("cancel", idle, running, "--yes") == {
        "done": [idle], "requested": [running], "failed": {}}
    assert bgp.jobs.get(running).state == "Executing"  # asked to stop, not stopped
    assert run_json("status", running)["cancel_requested"] is True
    assert "cancel requested" in run("status", running)
    out = run("cancel", running, "--terminate")
    assert "cancel: 0 done, 1 terminate requested, 0 failed" in out
    bgp.jobs.change_state(running, Cancelled(reason="stopped"))
    assert run_json("status", running)["cancel_requested"] is False
    assert "cancel requested" not in run("status", running)


def test_a_project_without_bgp_fails_clearly():
    result = CliRunner().invoke(celery, ["-A", "tests.apps.plain_celery", "bgp", "stats"])
    assert result.exit_code == 1
    assert "has no BackgroundProcessing" in result.output


def test_an_id_starting_with_a_dash_goes_after_double_dash():
    job = bgp.jobs.submit(J.add, args=[2, 2], job_id="-dash-first-id")
    status = json.loads(run("status", "--json", "--", job))
    assert status["job"]["state"] == "Succeeded"
