"""The Django management commands, on the project's current Celery app."""
from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from tests.apps import jobs as J
from tests.apps.cli_app import app, bgp


@pytest.fixture(autouse=True)
def current():
    bgp.jobs.store.clear()
    app.set_current()
    yield


def run(capsys, *args):
    call_command(*args)
    return capsys.readouterr().out


def test_stats_status_requeue_and_purge(capsys):
    ok = bgp.jobs.enqueue(J.add, 1, 2)
    bad = bgp.jobs.enqueue(J.fail, "no")
    assert json.loads(run(capsys, "bgp_stats", "--json"))["states"] == {"Succeeded": 1,
                                                                        "Failed": 1}
    status = json.loads(run(capsys, "bgp_status", ok, "--json"))
    assert status["job"]["result"] == 3
    requeued = json.loads(run(capsys, "bgp_requeue", "--state", "Failed", "--noinput",
                              "--json"))
    assert requeued["done"] == [bad]
    assert json.loads(run(capsys, "bgp_purge", "--dry-run", "--json"))["would_purge"] == 0
    assert "Jobs per state" in run(capsys, "bgp_stats")


def test_failures_are_command_errors(capsys):
    with pytest.raises(CommandError, match="bgp status failed"):
        call_command("bgp_status", "missing")
