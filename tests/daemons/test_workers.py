"""Daemons on real ``celery worker`` processes (Django store on PostgreSQL, Redis broker):
a cluster daemon taken over after SIGKILL and never run twice at once, worker daemons
per worker and per queue, operators' stop/start/restart through the CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest
from celery import Celery

from celery_bgp import BackgroundProcessing
from tests.daemons.conftest import APP, LOCK_TIMEOUT, wait_for
from tests.helpers.workers import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def client() -> BackgroundProcessing:
    """The operators' side: the query API on the workers' store, no daemon declared."""
    app = Celery(f"daemon-ops-{uuid.uuid4().hex[:6]}", set_as_current=False)
    return BackgroundProcessing(app, name="default", job_store="django://",
                                job_modules=["tests.apps"])


def starts(sink, env, name):
    """``[(time, worker)]`` of the daemon's starts, as it recorded them."""
    items = sink.lrange(f"{env['BGP_TEST_DAEMON_KEY']}:{name}:starts", 0, -1)
    return [(float(t), who.split("|")[0]) for t, who in (i.split(" ", 1) for i in items)]


def ends(sink, env, name):
    return sink.lrange(f"{env['BGP_TEST_DAEMON_KEY']}:{name}:ends", 0, -1)


def cli(env, *args):
    full = {**os.environ, **env, "PYTHONPATH": str(ROOT), "BGP_TEST_DAEMONS": ""}
    return subprocess.run([sys.executable, "-m", "celery", "-A", APP, "bgp", *args],
                          cwd=ROOT, env=full, capture_output=True, text=True, timeout=120)


def test_cluster_daemon_is_taken_over_after_sigkill_and_never_runs_twice(
        workers, daemon_env, sink):
    first, second = workers.start(2, BGP_TEST_DAEMONS="ticker")
    (_started, runner), = wait_for(lambda: starts(sink, daemon_env, "ticker"), 30,
                                  "the ticker to start")
    time.sleep(LOCK_TIMEOUT / 2)  # both workers compete for the lease meanwhile
    assert len(starts(sink, daemon_env, "ticker")) == 1
    victim, survivor = (first, second) if runner == first.hostname else (second, first)
    assert runner == victim.hostname
    victim.kill()
    killed = time.time()
    taken = wait_for(lambda: starts(sink, daemon_env, "ticker")[1:], 4 * LOCK_TIMEOUT + 20,
                     "the takeover")
    (again, where), = taken
    assert where == survivor.hostname
    # Within the lock timeout plus one poll (the bound is loose for a loaded machine).
    assert again - killed < 2 * LOCK_TIMEOUT + 3, again - killed
    time.sleep(1)
    overlaps = sink.lrange(f"{daemon_env['BGP_TEST_DAEMON_KEY']}:ticker:overlaps", 0, -1)
    assert overlaps == []
    bgp = client()
    shown = bgp.daemons.get("ticker")
    assert (shown.status, shown.worker, shown.scope) == ("running", survivor.hostname, "cluster")
    assert any("taken over" in record.message for _, record in bgp.daemons.logs("ticker"))
    # A warm shutdown fires the stop token: the daemon ends cleanly.
    survivor.stop()
    assert wait_for(lambda: ends(sink, daemon_env, "ticker"), 15, "the clean stop")
    assert bgp.daemons.get("ticker").status == "stopped"


def test_worker_daemons_run_per_worker_and_per_queue_and_obey_the_cli(
        workers, daemon_env, sink):
    queue = daemon_env["BGP_TEST_QUEUE"]
    qa, qb = f"{queue}-a", f"{queue}-b"
    wa, wb = workers.start(2, queues=[[queue, qa], [qb]], BGP_TEST_QUEUE_A=qa,
                           BGP_TEST_DAEMONS="per-worker,queue-a-only,waiter")
    wait_for(lambda: len(starts(sink, daemon_env, "per-worker")) == 2, 30, "per-worker copies")
    wait_for(lambda: starts(sink, daemon_env, "waiter"), 30, "the waiter")
    assert [w for _, w in starts(sink, daemon_env, "queue-a-only")] == [wa.hostname]
    assert {w for _, w in starts(sink, daemon_env, "per-worker")} == {wa.hostname, wb.hostname}
    bgp = client()
    copies = wait_for(lambda: [c for c in bgp.daemons.copies("per-worker")
                               if c.status == "running"] if len(
        bgp.daemons.copies("per-worker")) == 2 else None, 15, "both copies running")
    assert {c.instance for c in copies} == {wa.hostname, wb.hostname}
    summary = bgp.daemons.get("per-worker")  # the daemon itself sums up its copies
    assert (summary.status, summary.worker) == ("running", "2 of 2 workers")

    done = cli(daemon_env, "daemon", "stop", "waiter")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: ends(sink, daemon_env, "waiter"), 15, "the waiter to stop")
    wait_for(lambda: bgp.daemons.get("waiter").status == "stopped", 15, "status stopped")
    listed = cli(daemon_env, "daemons", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {(r["name"], r["instance"]): r for r in json.loads(listed.stdout)}
    assert (rows["waiter", ""]["status"], rows["waiter", ""]["desired"]) == ("stopped",
                                                                            "stopped")
    assert rows["per-worker", wa.hostname]["status"] == "running"

    assert cli(daemon_env, "daemon", "start", "waiter").returncode == 0
    wait_for(lambda: len(starts(sink, daemon_env, "waiter")) == 2, 15, "the waiter again")
    assert cli(daemon_env, "daemon", "restart", "waiter").returncode == 0
    wait_for(lambda: len(starts(sink, daemon_env, "waiter")) == 3, 15, "the restart")
    assert len(ends(sink, daemon_env, "waiter")) == 2  # stopped before it started again
    wait_for(lambda: bgp.daemons.get("waiter").restarts >= 1, 10, "the restart counted")

    unknown = cli(daemon_env, "daemon", "stop", "no-such-daemon")
    assert unknown.returncode == 2
    assert "no daemon 'no-such-daemon'" in unknown.stderr
    text = cli(daemon_env, "daemons")
    assert "waiter" in text.stdout and "running" in text.stdout, text.stdout
