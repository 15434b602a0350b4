"""Without Django installed, the Django app and django-db:// fail with the extra's name."""
from __future__ import annotations

import subprocess
import sys

import pytest

BLOCK_DJANGO = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'django':
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
"""


@pytest.mark.parametrize("statement", [
    "import celery_bgp.contrib.django.store",
    "import celery_bgp.contrib.django.events",
    "from celery_bgp.events import repository_from_url; repository_from_url('django-db://')",
])
def test_missing_django_names_the_extra(statement):
    code = BLOCK_DJANGO + (
        "from celery_bgp.exceptions import MissingExtra\n"
        "try:\n"
        f"    {statement}\n"
        "except MissingExtra as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "pip install 'celery-bgp[django]'" in result.stdout, result.stdout + result.stderr


def test_core_and_jobs_do_not_import_django():
    code = BLOCK_DJANGO + (
        "import celery_bgp, celery_bgp.events, celery_bgp.jobs.store, celery_bgp.jobs.memory\n"
        "import celery_bgp.jobs.query, celery_bgp.events.repository\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr
