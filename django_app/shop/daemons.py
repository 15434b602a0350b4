"""The shop's daemon: a stock watcher the workers keep alive (stop and start it in the admin)."""
from __future__ import annotations

import random

from celery_bgp import DaemonContext


def watch_stock(daemon: DaemonContext) -> None:
    """Every 5 s, "check" the stock; the state shows the last check (admin: Daemons)."""
    checks = (daemon.state or {}).get("checks", 0)
    daemon.info(f"watching stock (after {checks} checks)")
    while not daemon.wait(5):  # returns True at once when stopped from the admin
        checks += 1
        kettles = random.randint(0, 20)
        daemon.set_state({"checks": checks, "kettles": kettles})
        if kettles < 3:
            daemon.warning(f"only {kettles} kettles left")
    daemon.info("stopped watching stock")
