"""Never imported by a resolution: its module is on no allow-list of the tests."""
from __future__ import annotations

raise AssertionError("a job name made a worker import tests.apps.allowlist.never")
