"""Restart policies on a real worker: none, on-failure, unless-stopped, always, with
back-off (no hot loop) and a faulting daemon shown as faulted."""
from __future__ import annotations

import itertools
import time

import pytest

from tests.daemons.conftest import wait_for
from tests.daemons.test_workers import client, ends, starts

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

POLICY_DAEMONS = ("none-fails,none-returns,on-failure-fails,on-failure-returns,"
                  "unless-stopped-returns,unless-stopped-waits,always-waits")


def test_each_restart_policy_behaves_as_documented(workers, daemon_env, sink):
    (worker,) = workers.start(1, BGP_TEST_DAEMONS=POLICY_DAEMONS)
    runs = wait_for(lambda: s if len(s := starts(sink, daemon_env, "on-failure-fails")) >= 4
                    else None, 30, "on-failure restarts")
    # Back-off 0.3, 0.6, 1.2 s between runs: each gap is at least its delay (no hot loop).
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(runs)]
    assert gaps[0] >= 0.3 and gaps[1] >= 0.6 and gaps[2] >= 1.2, gaps
    wait_for(lambda: len(starts(sink, daemon_env, "unless-stopped-returns")) >= 3, 15,
             "unless-stopped restarts after a clean return")
    bgp = client()
    failing = bgp.daemons.get("on-failure-fails")
    assert failing.restarts >= 3 and "failed on purpose" in failing.last_error
    assert failing.status in ("faulted", "starting", "running")
    wait_for(lambda: bgp.daemons.get("on-failure-fails").status == "faulted", 10,
             "faulted while it backs off")
    # none: one run, whatever happened; on-failure: a clean return is not restarted.
    for name, status in [("none-fails", "faulted"), ("none-returns", "stopped"),
                         ("on-failure-returns", "stopped")]:
        assert len(starts(sink, daemon_env, name)) == 1, name
        assert bgp.daemons.get(name).status == status, name
    assert "failed on purpose" in bgp.daemons.get("none-fails").last_error

    # An operator's stop holds for unless-stopped across a worker restart; always starts again.
    for name in ("unless-stopped-waits", "always-waits"):
        bgp.daemons.stop(name)
    wait_for(lambda: len(ends(sink, daemon_env, "unless-stopped-waits")) == 1
             and len(ends(sink, daemon_env, "always-waits")) == 1, 15, "both stopped")
    worker.stop()
    workers.start(1, BGP_TEST_DAEMONS=POLICY_DAEMONS)
    wait_for(lambda: len(starts(sink, daemon_env, "always-waits")) == 2, 30, "always again")
    time.sleep(1.5)
    assert len(starts(sink, daemon_env, "unless-stopped-waits")) == 1
    assert bgp.daemons.get("unless-stopped-waits").status == "stopped"
    assert bgp.daemons.get("always-waits").status == "running"
    # The daemons that ended for good stay ended on the new worker too.
    assert len(starts(sink, daemon_env, "none-fails")) == 1
    assert len(starts(sink, daemon_env, "on-failure-returns")) == 1
