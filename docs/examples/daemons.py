"""Daemons (kept alive by the workers) and swarms (named worker profiles)."""
import sys
import time

from celery import Celery

from celery_bgp import BackgroundProcessing, DaemonContext

app = Celery("example", broker="memory://")
bgp = BackgroundProcessing(app, job_store="memory://", job_modules=["daemons_example"],
                           job_lock_timeout=2)
sys.modules.setdefault("daemons_example", sys.modules["__main__"])  # a worker imports it so


def consume_feed(daemon: DaemonContext) -> None:
    """Runs until asked to stop; its state survives restarts and takeovers."""
    offset = (daemon.state or {}).get("offset", 0)
    daemon.info(f"resuming at offset {offset}")
    while not daemon.wait(0.05):  # wakes at once on stop, restart or worker shutdown
        offset += 1
        daemon.set_state({"offset": offset})


bgp.daemon("feed", "daemons_example:consume_feed", restart="on-failure", backoff=(0.5, 30))

# Swarms: `celery -A proj worker --swarm billing-eu` serves invoices-eu, 4 processes,
# prefetch 1, inherited from billing.
bgp.swarm("billing", queues=["invoices", "payments"], concurrency=4, prefetch=1)
bgp.swarm("billing-eu", parent="billing", queues=["invoices-eu"])


def wait_until(check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.05)


with bgp.daemons.running(worker="example-worker"):  # what every worker does
    wait_until(lambda: (bgp.daemons.get("feed").state or {}).get("offset", 0) > 5)
    feed = bgp.daemons.get("feed")
    print(feed.name, feed.status, "on", feed.worker, "since", feed.since, feed.state)
    bgp.daemons.stop("feed")  # what `celery -A proj bgp daemon stop feed` does
    wait_until(lambda: bgp.daemons.get("feed").status == "stopped")
    bgp.daemons.start("feed")
    wait_until(lambda: bgp.daemons.get("feed").status == "running")
    print([line.message for _, line in bgp.daemons.logs("feed")])

assert bgp.daemons.get("feed").status == "stopped"  # the worker stopped: so did the daemon
assert bgp.daemons.get("feed").state["offset"] > 5
