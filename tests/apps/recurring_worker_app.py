"""Worker app with one recurring job (``BGP_TEST_RECURRING``, every
``BGP_TEST_RECURRING_EVERY`` seconds) for ``celery worker -B``: the jobs app of
``tests.apps.jobs_worker_app`` (Django store on the test database, Redis broker)."""
from __future__ import annotations

import os

from .jobs_worker_app import app, bgp  # noqa: F401 - celery -A finds the app here

bgp.jobs.recurring(os.environ["BGP_TEST_RECURRING"], "tests.apps.jobs:add",
                   float(os.environ.get("BGP_TEST_RECURRING_EVERY", "1")), args=[1, 2],
                   queue=os.environ["BGP_TEST_QUEUE"])
