"""Worker app of the daemon tests: Django job store on the test database.

``BGP_TEST_DAEMONS`` picks the daemons to declare (comma-separated names of
:data:`DAEMONS`), so each test runs only its own; ``BGP_TEST_LOCK_TIMEOUT`` is the
lease timeout (short in tests).
"""
from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_settings")
os.environ.setdefault("BGP_TEST_USE_TEST_DB", "1")

import django

django.setup()

from celery import Celery  # noqa: E402

from celery_bgp import BackgroundProcessing  # noqa: E402
from tests.apps import daemon_fns  # noqa: E402

app = Celery("bgp_daemon_tests")
app.conf.update(
    broker_url=os.environ["BGP_TEST_BROKER"],
    task_default_queue=os.environ.get("BGP_TEST_QUEUE", "celery"),
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)
bgp = BackgroundProcessing(
    app,
    event_repository="memory://",
    job_store="django://",
    job_modules=["tests.apps"],
    job_lock_timeout=float(os.environ.get("BGP_TEST_LOCK_TIMEOUT", "60")),
)

FAST = (0.3, 1.2)  # back-off: 0.3, 0.6, 1.2, 1.2 ... seconds
#: name -> (callable, options)
DAEMONS = {
    "ticker": (daemon_fns.ticker, {}),
    "waiter": (daemon_fns.waits, {"restart": "unless-stopped"}),
    "per-worker": (daemon_fns.waits, {"scope": "worker"}),
    "queue-a-only": (daemon_fns.waits, {"scope": "worker",
                                        "queues": [os.environ.get("BGP_TEST_QUEUE_A", "a")]}),
    "none-fails": (daemon_fns.fails, {"restart": "none", "backoff": FAST}),
    "none-returns": (daemon_fns.returns, {"restart": "none", "backoff": FAST}),
    "on-failure-fails": (daemon_fns.fails, {"restart": "on-failure", "backoff": FAST}),
    "on-failure-returns": (daemon_fns.returns, {"restart": "on-failure", "backoff": FAST}),
    "unless-stopped-returns": (daemon_fns.returns, {"restart": "unless-stopped",
                                                    "backoff": FAST}),
    "unless-stopped-waits": (daemon_fns.waits, {"restart": "unless-stopped"}),
    "always-waits": (daemon_fns.waits, {"restart": "always"}),
}

for _name in filter(None, os.environ.get("BGP_TEST_DAEMONS", "ticker").split(",")):
    _fn, _options = DAEMONS[_name]
    bgp.daemon(_name, _fn, **_options)
