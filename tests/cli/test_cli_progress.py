"""``celery bgp status`` and ``celery bgp jobs`` show what a running job reported through
``context.progress``: a bar, done of total, its message and the time left (text and JSON)."""
from __future__ import annotations

import time

from celery_bgp.jobs import CancellationToken, Executing
from tests.apps import jobs as J
from tests.apps.cli_app import bgp
from tests.cli.test_cli import clean_store, run, run_json  # noqa: F401  (fixture)


def test_a_running_jobs_progress_in_status_and_jobs():
    running = bgp.jobs.submit(J.add, args=[1, 1], idle=True)
    bgp.jobs.store.acquire_lock(running, "w@test", timeout=60)
    bgp.jobs.store.transition(running, Executing(worker="w@test", execution_id="e1").record())
    context = bgp.jobs.context(bgp.jobs.get(running), CancellationToken())
    time.sleep(0.2)  # some time spent, so the rate (and the ETA) is known
    context.progress(4, 10, message="copying invoices")

    status = run_json("status", running)["progress"]
    assert status["done"] == 4 and status["total"] == 10 and status["percent"] == 40
    assert status["message"] == "copying invoices"
    assert status["remaining_seconds"] is not None and status["eta"]
    assert "[########------------] 40%  4 of 10  copying invoices  about" in run(
        "status", running)

    listed = run_json("jobs", "--state", "Executing")
    assert listed["progress"][running]["percent"] == 40
    assert "40%" in run("jobs", "--state", "Executing")
