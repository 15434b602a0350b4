"""Worker app of ``benchmarks/daemon_takeover.py``: one cluster daemon, the SQLAlchemy store.

``BGP_BENCH_JOB_STORE`` is the ``db+postgresql...`` URL of the benchmark's database;
``BGP_BENCH_LOCK_TIMEOUT`` the lease timeout.
"""
from __future__ import annotations

import os

from celery import Celery

from celery_bgp import BackgroundProcessing
from tests.apps import daemon_fns

app = Celery("bgp_daemon_bench")
app.conf.update(broker_url=os.environ["BGP_BENCH_BROKER"],
                broker_connection_retry_on_startup=True)
bgp = BackgroundProcessing(app, event_repository="memory://",
                           job_store=os.environ["BGP_BENCH_JOB_STORE"],
                           job_modules=["tests.apps"],
                           job_lock_timeout=float(os.environ["BGP_BENCH_LOCK_TIMEOUT"]))
bgp.daemon("ticker", daemon_fns.ticker)
