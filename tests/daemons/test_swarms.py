"""Swarms on real workers: ``celery worker --swarm NAME`` serves exactly the swarm's
queues with its concurrency and prefetch, and only its workers run its middleware."""
from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from celery import Celery

from celery_bgp import BackgroundProcessing, ImproperlyConfigured
from celery_bgp.swarms import resolve
from tests.apps import jobs as J
from tests.conftest import BROKER_DB, failed, stack_env
from tests.helpers.workers import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

APP = "tests.apps.daemon_swarm_app"


def test_sub_swarms_inherit_and_override_and_bad_input_fails():
    app = Celery("swarm-unit", set_as_current=False)
    bgp = BackgroundProcessing(app, job_store="memory://swarm-unit", job_modules=["tests.apps"])

    def outer(context, call_next):
        return call_next(context)

    def inner(context, call_next):
        return call_next(context)

    bgp.swarm("base", queues=["a", "b"], concurrency=4, prefetch=1, middleware=[outer])
    bgp.swarm("child", parent="base", prefetch=3, middleware=[inner])
    child = resolve(bgp, "child")
    assert (child.queues, child.concurrency, child.prefetch) == (("a", "b"), 4, 3)
    assert child.middleware == (outer, inner)
    assert any(o.name == "swarm" for o in app.user_options["worker"])
    with pytest.raises(ImproperlyConfigured, match="parent swarm 'nope' is not declared"):
        bgp.swarm("x", parent="nope")
    with pytest.raises(ImproperlyConfigured, match="concurrency must be an int >= 1"):
        bgp.swarm("x", concurrency=0)
    with pytest.raises(ImproperlyConfigured, match="unknown swarm 'ghost'"):
        resolve(bgp, "ghost")


def test_a_swarm_worker_serves_its_queues_and_applies_its_middleware(redis_base, sink,
                                                                     request):
    queue = f"swarm-{uuid.uuid4().hex[:8]}"
    env = stack_env(f"{redis_base}/{BROKER_DB}", redis_base, queue)
    # No -Q and no -c: the swarm says which queues and how many processes.
    swarm = WorkerProcess(APP, env, [], concurrency=None, extra_args=("--swarm", "billing-eu"))
    plain = WorkerProcess(APP, env, [f"{queue}-plain"], pool="solo", concurrency=1)
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda w: w.start(90), [swarm, plain]))
        app = Celery(f"swarm-pub-{uuid.uuid4().hex[:6]}", set_as_current=False)
        app.conf.update(broker_url=env["BGP_TEST_BROKER"])
        bgp = BackgroundProcessing(app, job_store="django://", job_modules=["tests.apps"],
                                   job_retry={"max_attempts": 1})
        inspect = app.control.inspect([swarm.hostname], timeout=5)
        served = {q["name"] for q in inspect.active_queues()[swarm.hostname]}
        assert served == {f"{queue}-eu"}  # the sub-swarm's queues replace its parent's
        stats = inspect.stats()[swarm.hostname]
        assert stats["pool"]["max-concurrency"] == 3  # inherited
        assert stats["prefetch_count"] == 3 * 2  # concurrency x the sub-swarm's prefetch

        on_swarm = bgp.jobs.submit(J.add, args=[1, 2], queue=f"{queue}-eu")
        elsewhere = bgp.jobs.submit(J.add, args=[3, 4], queue=f"{queue}-plain")
        assert bgp.jobs.wait(on_swarm).worker == swarm.hostname
        assert bgp.jobs.wait(elsewhere).worker == plain.hostname
        assert sink.lrange(f"{queue}:mw:{on_swarm}", 0, -1) == ["billing", "eu"]
        assert sink.lrange(f"{queue}:mw:{elsewhere}", 0, -1) == []
        parent_queue = bgp.jobs.submit(J.add, args=[5, 6], queue=f"{queue}-inv")
        assert bgp.jobs.get(parent_queue).state == "Enqueued"  # nobody serves it
    finally:
        for worker in (swarm, plain):
            worker.stop()
            if failed(request):
                print(f"--- {worker.hostname} ---\n{worker.log()[-4000:]}")

