"""Cancelling jobs: a running job stops within about a second of the request (Celery's
control channel, not the 20 s heartbeat), ``terminate`` kills one that ignores its token
and records it Cancelled (never run again), and everyone says "cancel requested" until
it has stopped.

Real ``celery worker`` processes (prefork and threads) on Redis and RabbitMQ with the
Django store on PostgreSQL, plus the pieces on their own.
"""
from __future__ import annotations

import os
import signal
import time
import uuid
from types import SimpleNamespace

import pytest

from celery_bgp.commands import new_command_id, utcnow
from celery_bgp.jobs import CancellationToken, Executing, JobKind, JobRecord
from celery_bgp.jobs.cancelling import (
    WAKE_SIGNAL,
    CancelResult,
    cancel_terminated,
    install_wake_handler,
)
from celery_bgp.jobs.heartbeats import Heartbeats
from celery_bgp.jobs.memory import MemoryJobStore
from celery_bgp.jobs.monitor import recover
from celery_bgp.jobs.states import Created, Enqueued
from tests.apps import jobs as J
from tests.conftest import BROKER_DB, failed, stack_env
from tests.helpers.workers import WorkerProcess
from tests.jobs.test_workers import publisher

APP = "tests.apps.jobs_worker_app"
#: What the tests allow between bgp.jobs.cancel and the job's Cancelled state.
PROMPT = 3.0

on_worker = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def worker_test(fn):
    for mark in on_worker:
        fn = mark(fn)
    return fn


# -- the pieces, in this process -------------------------------------------------------


def executing_job(store: MemoryJobStore, holder: str = "w@test/1/e1",
                  timeout: float = 600) -> str:
    now = utcnow()
    job = JobRecord(id=new_command_id(), name="tests.apps.jobs:add", kind=JobKind.CALLABLE,
                    queue="q", priority=2, environment="default", state=Enqueued.name,
                    created=now, modified=now, args=[1, 2], execution_id="e1")
    store.create(job, [Created().record(now), Enqueued().record(now)])
    store.transition(job.id, Executing(worker="w@test", execution_id="e1").record(),
                     holder=holder, take_lock=timeout)
    return job.id


@pytest.fixture
def heartbeats():
    store = MemoryJobStore()
    beats = Heartbeats(SimpleNamespace(store=store))
    yield beats, store
    for job_id in list(beats._running):
        beats.remove(job_id)


def test_a_wake_up_fires_the_token_of_a_job_asked_to_stop_only(heartbeats):
    beats, store = heartbeats
    asked, other = executing_job(store), executing_job(store)
    asked_token, other_token = CancellationToken(), CancellationToken()
    beats.add(asked, "w@test/1/e1", 600, asked_token)  # next heartbeat in 200 s
    beats.add(other, "w@test/1/e1", 600, other_token)
    store.request_cancel(asked)
    started = time.monotonic()
    beats.check_now()
    assert asked_token.wait(2)
    assert time.monotonic() - started < 1
    assert not other_token.cancelled  # a wake-up never cancels by itself


def test_a_wake_up_just_before_the_job_registers_is_not_lost(heartbeats):
    """The worker's cancel may land between the job's Executing write and its heartbeat
    registration; the job is checked as it registers, not 20 s later."""
    beats, store = heartbeats
    job_id = executing_job(store)
    store.request_cancel(job_id)
    beats.check_now()  # nothing registered yet: nothing to check
    token = CancellationToken()
    beats.add(job_id, "w@test/1/e1", 600, token)
    assert token.wait(2.5)


@pytest.mark.skipif(WAKE_SIGNAL is None, reason="no real-time signals on this platform")
def test_the_wake_signal_wakes_the_heartbeats(heartbeats):
    beats, store = heartbeats
    job_id = executing_job(store)
    token = CancellationToken()
    beats.add(job_id, "w@test/1/e1", 600, token)
    previous = signal.getsignal(WAKE_SIGNAL)
    install_wake_handler()
    try:
        store.request_cancel(job_id)
        os.kill(os.getpid(), WAKE_SIGNAL)
        assert token.wait(2)
    finally:
        signal.signal(WAKE_SIGNAL, previous)


def test_recovery_cancels_a_lost_job_that_was_asked_to_stop(bgp_memory):
    store = bgp_memory.jobs.store
    asked, lost = executing_job(store, timeout=0.05), executing_job(store, timeout=0.05)
    store.request_cancel(asked)
    time.sleep(0.1)  # both workers stopped heartbeating
    assert recover(bgp_memory.jobs) == 2
    assert store.get(asked).state == "Cancelled"  # never requeued, never run again
    assert store.states(asked)[-1].reason.startswith("cancel requested; worker lost")
    names = [s.name for s in store.states(lost)]  # the others: requeued as before
    assert "Cancelled" not in names and names[names.index("Executing") + 1] == "Enqueued"


def test_a_terminated_execution_is_cancelled_and_its_lock_released(bgp_memory):
    store = bgp_memory.jobs.store
    job_id = executing_job(store, holder="w@test/4242/e1")
    cancel_terminated(bgp_memory.jobs, job_id, "other-execution", "terminated")
    assert store.get(job_id).state == "Executing"  # not the execution that was killed
    cancel_terminated(bgp_memory.jobs, job_id, "e1", "terminated by signal 15")
    job = store.get(job_id)
    assert (job.state, job.lock) == ("Cancelled", None)
    assert store.states(job_id)[-1].reason == "terminated by signal 15"


def test_cancel_says_cancelled_or_requested(bgp_memory):
    jobs = bgp_memory.jobs
    idle = jobs.submit(J.add, args=[1, 1], idle=True)
    result = jobs.cancel(idle)
    assert (result.done, result.requested, result.state) == (True, False, "Cancelled")
    assert str(result) == f"job {idle} cancelled"
    running = executing_job(jobs.store)
    result = jobs.cancel(running, terminate=True)
    assert isinstance(result, CancelResult)
    assert (result.done, result.requested, result.state) == (False, True, "Executing")
    assert "terminate requested" in str(result)
    assert jobs.store.cancel_requested(running)


@pytest.fixture
def bgp_memory():
    from celery import Celery

    from celery_bgp import BackgroundProcessing

    app = Celery(f"cancel-{uuid.uuid4().hex[:6]}", broker="memory://", set_as_current=False)
    app.conf.task_always_eager = True
    return BackgroundProcessing(app, name="default", job_store="memory://",
                                job_modules=["tests.apps"], event_repository="memory://")


# -- real workers ----------------------------------------------------------------------


@pytest.fixture(scope="module", params=["redis", "amqp"])
def env(request, redis_base):
    if request.param == "redis":
        broker_url = f"{redis_base}/{BROKER_DB}"
    else:
        broker_url = request.getfixturevalue("amqp_url")
    return stack_env(broker_url, redis_base, f"bgp-cancel-{uuid.uuid4().hex[:8]}")


def _own_queue(env):
    """The env with a queue of its own: the module's ``prefork`` worker, if a test before
    started it, consumes the module's queue too and would take the test's jobs."""
    return {**env, "BGP_TEST_QUEUE": f"{env['BGP_TEST_QUEUE']}-{uuid.uuid4().hex[:6]}"}


def _started(env, django_db_setup, settings=None, **options):
    """A started worker; ``settings`` adds to its environment (see jobs_worker_app)."""
    return WorkerProcess(APP, {**env, **(settings or {})}, [env["BGP_TEST_QUEUE"]],
                         **options).start()


@pytest.fixture(scope="module")
def prefork(env, django_db_setup):
    """Default settings: a 60 s lock, so the heartbeat checks cancels every 20 s."""
    worker = _started(env, django_db_setup)
    yield worker
    worker.stop()


@pytest.fixture
def worker_log(request):
    """Print the logs of the workers a test used when it failed."""
    used: list[WorkerProcess] = []
    yield used.append
    if failed(request):
        for worker in used:
            print(f"--- worker {worker.pool} log ---\n{worker.log()[-6000:]}")


def started_run(sink, key: str, runs: int = 1, timeout: float = 30) -> None:
    """Wait until the job's callable itself has started (its ``runs``-th time)."""
    deadline = time.monotonic() + timeout
    while int(sink.get(key) or 0) < runs:
        assert time.monotonic() < deadline, f"{key} did not start"
        time.sleep(0.02)


def cancel_and_time(bgp, job_id: str, **options) -> tuple[CancelResult, float, object]:
    """Cancel; return the result, the seconds until the job was Cancelled, the job."""
    started = time.monotonic()
    result = bgp.jobs.cancel(job_id, **options)
    job = bgp.jobs.wait(job_id, timeout=30, interval=0.02)
    return result, time.monotonic() - started, job


@worker_test
def test_a_running_job_is_cancelled_within_a_second(env, prefork, sink, worker_log):
    worker_log(prefork)
    bgp = publisher(env)
    key = f"loop-{uuid.uuid4().hex}"
    job_id = bgp.jobs.submit(J.cancellable, args=[key, 60])
    started_run(sink, key)
    asked = time.time()
    result, latency, job = cancel_and_time(bgp, job_id)
    assert result.requested and result.state == "Executing"
    assert job.state == "Cancelled", bgp.jobs.history(job_id)
    assert latency < PROMPT, latency  # the heartbeat alone would take up to 20 s
    assert float(sink.get(f"{key}:stopped")) - asked < PROMPT
    assert bgp.jobs.history(job_id)[-1].reason == "stopped on request"
    assert sink.get(key) == "1"


@worker_test
def test_a_job_that_finishes_first_keeps_its_result(env, prefork, worker_log):
    worker_log(prefork)
    bgp = publisher(env)
    job_id = bgp.jobs.enqueue(J.sleep_plain, 1.5)  # never looks at its token
    bgp.jobs.wait(job_id, states=["Executing"])
    result = bgp.jobs.cancel(job_id)
    assert result.requested
    job = bgp.jobs.wait(job_id, timeout=30)
    assert (job.state, job.result) == ("Succeeded", 1.5)


@worker_test
def test_cancel_of_an_enqueued_job_is_immediate(env, prefork, worker_log):
    worker_log(prefork)
    bgp = publisher(env)
    job_id = bgp.jobs.submit(J.add, args=[1, 1], delay=1.5)
    result = bgp.jobs.cancel(job_id)
    assert (result.done, result.state) == (True, "Cancelled")
    assert bgp.jobs.get(job_id).state == "Cancelled"
    time.sleep(3)  # its message reached the worker meanwhile: dropped
    assert bgp.jobs.get(job_id).state == "Cancelled"
    assert "Executing" not in [s.name for s in bgp.jobs.history(job_id)]


@worker_test
def test_a_cancelled_job_runs_again_when_requeued(env, prefork, sink, worker_log):
    """No ``revoke``: a revoked id would make every worker discard the job's next message."""
    worker_log(prefork)
    bgp = publisher(env)
    key = f"again-{uuid.uuid4().hex}"
    job_id = bgp.jobs.submit(J.cancellable, args=[key, 60])
    started_run(sink, key)
    assert cancel_and_time(bgp, job_id)[2].state == "Cancelled"
    bgp.jobs.requeue(job_id)
    started_run(sink, key, runs=2)
    _, latency, job = cancel_and_time(bgp, job_id)
    assert job.state == "Cancelled" and latency < PROMPT


@worker_test
def test_terminate_kills_a_job_that_ignores_its_token(env, sink, django_db_setup, worker_log):
    """Each job ends Cancelled at once and recovery never runs it again (3 s lock). The
    worker runs without Celery's Django fixup: the main process records each Cancelled,
    then forks the killed child's replacement, which must not share its connection."""
    fast = {"BGP_TEST_LOCK_TIMEOUT": "3", "BGP_TEST_MONITOR_INTERVAL": "1",
            "BGP_TEST_DJANGO_FIXUP": "0"}
    env = _own_queue(env)
    worker = _started(env, django_db_setup, fast)
    worker_log(worker)
    try:
        bgp = publisher(env)
        killed = []
        for _ in range(3):
            key = f"term-{uuid.uuid4().hex}"
            job_id = bgp.jobs.submit(J.ignores_cancel, args=[key, 60])
            started_run(sink, key)
            result, latency, job = cancel_and_time(bgp, job_id, terminate=True)
            assert result.requested and result.terminate
            assert job.state == "Cancelled"
            assert latency < PROMPT, latency  # not the lock's expiry + recovery
            assert bgp.jobs.history(job_id)[-1].reason == "terminated by signal 15"
            assert job.lock is None
            killed.append((job_id, key))
        time.sleep(6)  # twice the lock timeout, with recovery every second
        for job_id, key in killed:
            assert bgp.jobs.get(job_id).state == "Cancelled"
            assert [s.name for s in bgp.jobs.history(job_id)].count("Executing") == 1
            assert sink.get(key) == "1"  # never ran again
        assert bgp.jobs.wait(bgp.jobs.enqueue(J.add, 2, 3)).result == 5  # the pool recovered
        assert "Traceback" not in worker.log()
    finally:
        worker.stop()


@worker_test
def test_the_thread_pool_cancels_promptly_too(env, sink, django_db_setup, worker_log):
    """Jobs run in the worker's own process: the control command wakes its heartbeats;
    ``terminate`` cannot kill a thread, so the token is all there is."""
    env = _own_queue(env)
    worker = _started(env, django_db_setup, pool="threads")
    worker_log(worker)
    try:
        bgp = publisher(env)
        for terminate in (False, True):
            key = f"threads-{uuid.uuid4().hex}"
            job_id = bgp.jobs.submit(J.cancellable, args=[key, 60])
            started_run(sink, key)
            _, latency, job = cancel_and_time(bgp, job_id, terminate=terminate)
            assert job.state == "Cancelled"
            assert latency < PROMPT, (terminate, latency)
            assert bgp.jobs.history(job_id)[-1].reason == "stopped on request"
    finally:
        worker.stop()
