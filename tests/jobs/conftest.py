"""Job store fixtures: every store implementation runs the same contract suite."""
from __future__ import annotations

import pytest

from celery_bgp.jobs.memory import MemoryJobStore


def _memory(request):
    return MemoryJobStore()


#: name -> factory(request) -> JobStore. The Django store adds itself here.
STORE_FACTORIES = {"memory": _memory}


@pytest.fixture(params=sorted(STORE_FACTORIES))
def job_store(request):
    store = STORE_FACTORIES[request.param](request)
    yield store
    store.close()
