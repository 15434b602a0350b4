"""The job store goes away while jobs run (issue 11), and the ``bgp.job`` task's outcome
follows the job's (issue 10).

In one process (memory store, a store that fails on purpose): the runner retries the
read and writes, gives the message back, keeps a final state it could not write, and
the monitor re-sends stalled jobs. With real ``celery worker`` processes on Redis and
RabbitMQ, PostgreSQL reached through a TCP proxy (tests/helpers/tcp_proxy.py) that
the test cuts: only the workers lose the store, the shared server serves everyone else.
Each scenario adds a row to the fault table (sent, completed, duplicated, lost, stuck).
"""
from __future__ import annotations

import re
import time
import types
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from celery import Celery
from celery.exceptions import Retry

from celery_bgp import BackgroundProcessing
from celery_bgp.jobs import Executing, JobCancelled, Q
from celery_bgp.jobs import runner as runner_module
from celery_bgp.jobs.memory import MemoryJobStore
from celery_bgp.jobs.monitor import recover, resend_stalled
from celery_bgp.jobs.runner import JobFailed, JobStateNotRecorded, JobWasCancelled, run_job
from celery_bgp.jobs.states import Enqueued, Retrying
from tests.apps import jobs as J
from tests.conftest import BROKER_DB, failed, stack_env
from tests.helpers.faults import record
from tests.helpers.servers import PG_HOST, PG_PORT, require_server
from tests.helpers.tcp_proxy import TcpProxy
from tests.helpers.workers import WorkerProcess
from tests.jobs.test_workers import publisher  # the worker app's stores, publisher side

APP = "tests.apps.jobs_worker_app"
FINAL = {"Succeeded", "Failed", "Cancelled", "Deleted"}


# -- one process: the runner and the monitor against a store that fails on purpose ----


class FlakyStore(MemoryJobStore):
    """A memory store whose ``get`` / ``transition`` raise ConnectionError (one of the
    contract's ``unavailable`` errors) while ``down`` says so."""

    def __init__(self) -> None:
        super().__init__()
        self.down: dict[str, int] = {}  # method -> failures left (-1: until cleared)
        self.idle = 0

    def _maybe_fail(self, method: str, state: str | None = None) -> None:
        key = f"{method}:{state}" if f"{method}:{state}" in self.down else method
        left = self.down.get(key, 0)
        if left:
            self.down[key] = left - 1 if left > 0 else left
            raise ConnectionError(f"store down ({key})")

    def get(self, job_id):
        self._maybe_fail("get")
        return super().get(job_id)

    def transition(self, job_id, state, **kw):
        self._maybe_fail("transition", state.name)
        return super().transition(job_id, state, **kw)

    def on_idle(self) -> None:
        self.idle += 1


class FakeTask:
    """What the runner reads of a Celery task: its request, and ``retry``."""

    def __init__(self, retries: int = 0, eager: bool = False) -> None:
        self.request = types.SimpleNamespace(hostname="w@test", retries=retries,
                                             is_eager=eager, called_directly=False)
        self.retried: list[dict] = []

    def retry(self, exc=None, countdown=None, **_):
        self.retried.append({"exc": exc, "countdown": countdown})
        return Retry(exc=exc, when=countdown)


def make_flaky(**options) -> types.SimpleNamespace:
    """A jobs engine on a FlakyStore whose messages are collected, not sent."""
    store = FlakyStore()
    app = Celery(f"outage-{uuid.uuid4().hex[:6]}", set_as_current=False)
    app.conf.update(broker_url="memory://")
    options.setdefault("job_stalled_after", 60)
    bgp = BackgroundProcessing(app, name="default", job_store=store, job_modules=["tests.apps"],
                               job_retry={"max_attempts": 1}, event_write="sync", **options)
    sent: list[tuple[str, str | None]] = []
    bgp.jobs._publish = lambda job, when: sent.append((job.id, job.execution_id))
    return types.SimpleNamespace(bgp=bgp, store=store, sent=sent)


@pytest.fixture
def flaky():
    return make_flaky()


def message(flaky, fn, *args, **options):
    """Enqueue a job; return (job id, the execution id its message carries)."""
    job_id = flaky.bgp.jobs.submit(fn, args=args, **options)
    return job_id, flaky.store.get(job_id).execution_id


def test_a_read_that_keeps_failing_gives_the_message_back(flaky):
    job_id, execution = message(flaky, J.add, 1, 2)
    flaky.store.down["get"] = -1
    task = FakeTask(retries=3)
    with pytest.raises(Retry):
        run_job(flaky.bgp.jobs, task, job_id, execution)
    [retry] = task.retried
    assert isinstance(retry["exc"], ConnectionError)
    assert 1 <= retry["countdown"] <= 1 + 2 ** 3  # exponential back-off, with jitter
    assert flaky.store.idle >= 1  # a broken connection is dropped between tries
    flaky.store.down.clear()
    assert flaky.store.get(job_id).state == "Enqueued"  # not dropped: the retry runs it
    assert run_job(flaky.bgp.jobs, FakeTask(retries=4), job_id, execution) == 3
    assert flaky.store.get(job_id).state == "Succeeded"


def test_a_short_blip_is_retried_in_the_worker(flaky):
    job_id, execution = message(flaky, J.add, 2, 2)
    flaky.store.down.update({"get": 1, "transition:Executing": 1, "transition:Succeeded": 2})
    task = FakeTask()
    assert run_job(flaky.bgp.jobs, task, job_id, execution) == 4
    assert task.retried == []
    assert [s.name for s in flaky.bgp.jobs.history(job_id)][-2:] == ["Executing", "Succeeded"]
    assert flaky.store.get(job_id).lock is None


def test_an_executing_write_that_keeps_failing_gives_the_message_back(flaky):
    job_id, execution = message(flaky, J.add, 1, 1)
    flaky.store.down["transition:Executing"] = -1
    task = FakeTask()
    with pytest.raises(Retry):
        run_job(flaky.bgp.jobs, task, job_id, execution)
    assert len(task.retried) == 1
    job = flaky.store.get(job_id)
    assert (job.state, job.lock) == ("Enqueued", None)


def test_a_final_state_that_cannot_be_written_is_left_to_recovery(monkeypatch, sink):
    monkeypatch.setattr(runner_module, "RECORD_PATIENCE", 1.0)
    flaky = make_flaky(job_lock_timeout=0.5)
    key = f"final-{uuid.uuid4().hex}"
    job_id, execution = message(flaky, J.record, key, "ran")
    flaky.store.down["transition:Succeeded"] = -1
    with pytest.raises(JobStateNotRecorded):
        run_job(flaky.bgp.jobs, FakeTask(), job_id, execution)
    job = flaky.store.get(job_id)
    assert job.state == "Executing" and job.lock is not None  # not lost: still Executing
    flaky.store.down.clear()
    time.sleep(0.6)  # no heartbeat any more: the lock expires
    assert recover(flaky.bgp.jobs) == 1
    requeued = flaky.store.get(job_id)
    assert requeued.state == "Enqueued" and requeued.execution_id != execution
    assert flaky.sent[-1] == (job_id, requeued.execution_id)
    assert run_job(flaky.bgp.jobs, FakeTask(), job_id, requeued.execution_id) == "ran"
    assert sink.lrange(key, 0, -1) == ["ran", "ran"]  # at least once


def test_an_election_handler_that_cannot_read_the_store_is_not_refused(flaky):
    bgp = flaky.bgp
    calls = []

    @bgp.jobs.election_handler
    def reads_the_store(election):
        if election.candidate.name == "Executing":
            calls.append(election.candidate.name)
            if len(calls) == 1:
                raise ConnectionError("store down while the handler read it")
        return None

    job_id, execution = message(flaky, J.add, 3, 4)
    assert run_job(bgp.jobs, FakeTask(), job_id, execution) == 7  # tried again, not Failed
    assert calls == ["Executing", "Executing"]
    assert bgp.jobs.get(job_id).state == "Succeeded"


def test_the_task_outcome_follows_the_job(flaky):
    bgp = flaky.bgp
    job_id, execution = message(flaky, J.fail, "boom")
    with pytest.raises(JobFailed, match="ValueError: boom") as failed_:
        run_job(bgp.jobs, FakeTask(), job_id, execution)
    assert isinstance(failed_.value.__cause__, ValueError)
    assert bgp.jobs.get(job_id).state == "Failed"

    job_id, execution = message(flaky, J.fail, "again", retry={"max_attempts": 2,
                                                                "delays": [30]})
    with pytest.raises(Retry, match=r"Retry in 30\.0s") as retried:
        run_job(bgp.jobs, FakeTask(), job_id, execution)
    assert isinstance(retried.value.exc, ValueError)
    assert bgp.jobs.get(job_id).state == "Enqueued"  # the engine sent the next attempt

    doomed, execution = message(flaky, J.add, 5, 5)

    @bgp.jobs.use
    def stop(context, call_next):
        if context.id == doomed:
            raise JobCancelled("stopped on request")
        return call_next(context)

    with pytest.raises(JobWasCancelled, match="stopped on request"):
        run_job(bgp.jobs, FakeTask(), doomed, execution)
    assert bgp.jobs.get(doomed).state == "Cancelled"

    job_id, execution = message(flaky, J.fail, "eager")
    assert run_job(bgp.jobs, FakeTask(eager=True), job_id, execution) is None
    assert bgp.jobs.get(job_id).state == "Failed"


def test_stalled_jobs_are_sent_again_and_delayed_ones_wait(flaky):
    bgp, store = flaky.bgp, flaky.store
    lost, execution = message(flaky, J.add, 1, 1)
    delayed, _ = message(flaky, J.add, 1, 1, delay=timedelta(minutes=30))
    running, _ = message(flaky, J.add, 1, 1)
    store.transition(running, Executing(worker="w", execution_id="x").record())
    retrying = bgp.jobs.submit(J.add, args=[1, 1], idle=True)
    store.transition(retrying, Retrying(attempt=1, delay=5).record())
    flaky.sent.clear()
    now = datetime.now(timezone.utc)
    assert resend_stalled(bgp.jobs, now=now + timedelta(seconds=30)) == 0  # not yet
    assert resend_stalled(bgp.jobs, now=now + timedelta(seconds=90)) == 2
    job = store.get(lost)
    assert (job.state, job.execution_id) == ("Enqueued", execution)  # same execution id
    assert bgp.jobs.history(lost)[-1].reason.startswith("stalled: Enqueued for")
    moved = store.get(retrying)
    assert moved.state == "Enqueued" and moved.execution_id
    assert sorted(flaky.sent) == sorted([(lost, execution), (retrying, moved.execution_id)])
    assert store.get(delayed).state == "Enqueued" and store.get(running).state == "Executing"
    # Re-sent once per bound (counted from the re-send), not at every sweep.
    assert resend_stalled(bgp.jobs, now=datetime.now(timezone.utc) + timedelta(seconds=50)) == 0
    # Both messages of the lost job are valid: the first run wins, the other is dropped.
    assert run_job(bgp.jobs, FakeTask(), lost, execution) == 2
    assert run_job(bgp.jobs, FakeTask(), lost, execution) is None
    # The delayed job is stalled only once it is due (plus the bound); the formerly
    # Retrying one, that no worker ran, is sent again meanwhile.
    flaky.sent.clear()
    resend_stalled(bgp.jobs, now=now + timedelta(minutes=30, seconds=50))
    assert [job_id for job_id, _ in flaky.sent] == [retrying]
    resend_stalled(bgp.jobs, now=now + timedelta(minutes=30, seconds=90))
    assert delayed in [job_id for job_id, _ in flaky.sent]
    assert bgp.jobs.history(delayed)[-1].reason.startswith("stalled: Enqueued for")


def test_the_stalled_sweep_can_be_switched_off():
    off = make_flaky(job_stalled_after=0)
    message(off, J.add, 1, 1)
    assert off.bgp.settings.job_stalled_after == 0
    assert resend_stalled(off.bgp.jobs, now=datetime.now(timezone.utc) + timedelta(1)) == 0
    assert make_flaky(job_stalled_after=None).bgp.settings.job_stalled_after == 0


# -- real workers, PostgreSQL through a proxy the test cuts ---------------------------


@pytest.fixture(params=["redis", "amqp"])
def broker(request, redis_base):
    if request.param == "redis":
        return request.param, f"{redis_base}/{BROKER_DB}"
    return request.param, request.getfixturevalue("amqp_url")


@pytest.fixture
def env(broker, redis_base):
    return stack_env(broker[1], redis_base, f"bgp-outage-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def pg_proxy():
    require_server("PostgreSQL", PG_HOST, PG_PORT)
    with TcpProxy(PG_HOST, PG_PORT) as proxy:
        yield proxy


def states_of(bgp, ids: list[str]) -> dict[str, str]:
    found = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        for job in bgp.jobs.search(Q(id__in=chunk), limit=len(chunk)):
            found[job.id] = job.state
    return found


JOBS = 300
OUTAGE = 20.0


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(170)
def test_a_store_outage_strands_no_job(broker, env, pg_proxy, sink, request):
    """Issue 11: PostgreSQL cut for 20 s while 300 jobs run. Before: 42 finished and 258
    stayed Enqueued for ever (their messages were acknowledged on a failed read). Now
    every job ends Succeeded by itself, and none runs twice."""
    bgp = publisher(env)
    key = f"outage-{uuid.uuid4().hex}"
    worker_env = {**env, "BGP_TEST_PG_PORT": str(pg_proxy.port),
                  "BGP_TEST_LOCK_TIMEOUT": "30", "BGP_TEST_MONITOR_INTERVAL": "2"}
    ids = [uuid.uuid4().hex for _ in range(JOBS)]
    with WorkerProcess(APP, worker_env, [env["BGP_TEST_QUEUE"]], concurrency=2) as worker:
        try:
            for job_id in ids:
                bgp.jobs.submit(J.record, args=[key, job_id], job_id=job_id)
            deadline = time.monotonic() + 60
            while sink.llen(key) < 40:  # the cut comes while the jobs run
                assert time.monotonic() < deadline, worker.log()[-4000:]
                time.sleep(0.02)
            pg_proxy.cut()
            at_cut = sink.llen(key)
            time.sleep(OUTAGE)
            pg_proxy.restore()
            deadline = time.monotonic() + 100
            while True:
                states = states_of(bgp, ids)
                done = sum(state in FINAL for state in states.values())
                if done == len(ids) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            runs = sink.lrange(key, 0, -1)
            stuck = len(ids) - done
            row = record(f"job store (PostgreSQL) cut {OUTAGE:.0f} s, {JOBS} jobs", ids, runs,
                         stuck=stuck, broker=broker[0])
            log = worker.log()
        finally:
            if failed(request):
                print(f"--- worker log ---\n{worker.log()[-8000:]}")
    print(f"\n{row}\nfinished before the cut: {at_cut}; messages sent back to the broker: "
          f"{log.count('message sent back')}; store retries in the worker: reads "
          f"{log.count('unavailable while reading')}, Executing writes "
          f"{log.count('unavailable while starting')}, final writes "
          f"{log.count('unavailable while recording')}; recovered after lock expiry: "
          f"{log.count('recovered (')}; final states not recorded: "
          f"{log.count('JobStateNotRecorded')}")
    assert "job store unavailable" in log  # the outage did reach the workers
    assert (row["lost"], stuck) == (0, 0), row
    assert set(states.values()) == {"Succeeded"}, row
    assert row["duplicated"] == 0, row


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_a_job_whose_message_was_lost_is_sent_again_by_the_monitor(redis_base, sink):
    """An Enqueued job with no message in flight (a worker took it and died before
    Executing, a lost publish) is sent again once it has waited ``bgp_job_stalled_after``
    s; one delayed to later waits for its time. (The sweep does not depend on the broker.)"""
    env = stack_env(f"{redis_base}/{BROKER_DB}", redis_base, f"bgp-stall-{uuid.uuid4().hex[:8]}")
    bgp = publisher(env)
    key = f"stalled-{uuid.uuid4().hex}"
    lost = bgp.jobs.submit(J.record, args=[key, "lost"], idle=True)
    later = bgp.jobs.submit(J.record, args=[key, "delayed"], idle=True)
    # Enqueued without a message: as if it had been consumed and lost.
    execution = uuid.uuid4().hex
    bgp.jobs.store.transition(lost, Enqueued(reason="message lost").record(),
                              changes={"execution_id": execution})
    due = datetime.now(timezone.utc) + timedelta(seconds=8)
    bgp.jobs.store.transition(later, Enqueued(delay_until=due).record())  # no execution id
    worker_env = {**env, "BGP_TEST_STALLED_AFTER": "3", "BGP_TEST_MONITOR_INTERVAL": "1"}
    with WorkerProcess(APP, worker_env, [env["BGP_TEST_QUEUE"]]) as worker:
        job = bgp.jobs.wait(lost, timeout=30)
        assert job.state == "Succeeded", (bgp.jobs.history(lost), worker.log()[-3000:])
        assert bgp.jobs.get(later).state == "Enqueued"  # delayed: not stalled before due
        assert bgp.jobs.wait(later, timeout=40).state == "Succeeded"
        assert datetime.now(timezone.utc) >= due + timedelta(seconds=3)
        log = worker.log()
    assert sink.lrange(key, 0, -1) == ["lost", "delayed"]
    assert [s.name for s in bgp.jobs.history(lost)][-4:] == [
        "Enqueued", "Enqueued", "Executing", "Succeeded"]
    assert bgp.jobs.history(lost)[-3].reason.startswith("stalled: Enqueued for")
    assert bgp.jobs.get(lost).execution_id == execution
    assert "its message was sent again" in log
    ran = {"lost": lost, "delayed": later}
    record("Enqueued job whose message was lost (stalled sweep)", [lost, later],
           [ran[item] for item in sink.lrange(key, 0, -1)], stuck=0, broker="redis")


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_the_worker_log_tells_the_job_outcome(env, broker):
    """Issue 10: Celery's own line for a Failed job said "succeeded"."""
    bgp = publisher(env)
    with WorkerProcess(APP, env, [env["BGP_TEST_QUEUE"]]) as worker:
        ok = bgp.jobs.enqueue(J.add, 1, 2)
        bad = bgp.jobs.enqueue(J.fail, "boom")
        twice = bgp.jobs.submit(J.fail, args=["twice"], retry={"max_attempts": 2,
                                                               "delays": [0.5]})
        stopped = bgp.jobs.enqueue(J.slow, 30)
        assert bgp.jobs.wait(ok).state == "Succeeded"
        assert bgp.jobs.wait(bad).state == "Failed"
        assert bgp.jobs.wait(twice).attempt == 2
        bgp.jobs.wait(stopped, states=["Executing"])
        bgp.jobs.cancel(stopped)
        assert bgp.jobs.wait(stopped, timeout=60).state == "Cancelled"
        deadline = time.monotonic() + 10
        while f"[{stopped}] raised" not in worker.log():
            assert time.monotonic() < deadline, worker.log()[-4000:]
            time.sleep(0.1)
        log = worker.log()

    def lines(job_id: str) -> list[str]:
        return [line for line in log.splitlines() if f"[{job_id}]" in line]

    assert any(re.search(r"succeeded in [\d.]+s: 3", line) for line in lines(ok))
    assert not any("succeeded" in line for line in lines(bad)), lines(bad)
    assert any("raised unexpected: JobFailed(" in line and "ValueError: boom" in line
               for line in lines(bad)), lines(bad)
    assert "ERROR" in next(line for line in lines(bad) if "raised unexpected" in line)
    assert not any("succeeded" in line for line in lines(stopped)), lines(stopped)
    assert any("raised expected: JobWasCancelled(" in line for line in lines(stopped))
    assert [line.split("] ", 2)[-1] for line in lines(twice)
            if "retry:" in line or "raised" in line] == [
        "retry: Retry in 0.5s: ValueError('twice')",
        f"raised unexpected: JobFailed('job {twice} failed (attempt 2): ValueError: twice')"]
    # The failure is the job's: Celery neither retried nor requeued the message.
    assert len([line for line in lines(bad) if "received" in line]) == 1
    assert bgp.jobs.get(bad).attempt == 1



@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_heartbeats_resume_after_an_outage(redis_base, pg_proxy):
    """A job running across the outage keeps its lock once the store is back: the
    heartbeat thread drops its broken connection instead of failing for ever (the job
    would then lose its lock and be run again by recovery)."""
    env = stack_env(f"{redis_base}/{BROKER_DB}", redis_base, f"bgp-beat-{uuid.uuid4().hex[:8]}")
    bgp = publisher(env)
    worker_env = {**env, "BGP_TEST_PG_PORT": str(pg_proxy.port),
                  "BGP_TEST_LOCK_TIMEOUT": "6", "BGP_TEST_MONITOR_INTERVAL": "0"}
    with WorkerProcess(APP, worker_env, [env["BGP_TEST_QUEUE"]]) as worker:
        job_id = bgp.jobs.enqueue(J.sleep_plain, 16)
        bgp.jobs.wait(job_id, states=["Executing"], timeout=30)
        deadline = time.monotonic() + 10
        while (lock := bgp.jobs.get(job_id).lock).heartbeat == lock.acquired:
            assert time.monotonic() < deadline  # the thread's connection is open
            time.sleep(0.1)
        pg_proxy.cut()
        time.sleep(5)  # the heartbeat (every 2 s) fails at least twice
        pg_proxy.restore()
        restored = datetime.now(timezone.utc)
        deadline = time.monotonic() + 8
        while True:
            lock = bgp.jobs.get(job_id).lock
            if lock is not None and lock.heartbeat > restored:
                break
            assert time.monotonic() < deadline, ("no heartbeat since the store came back",
                                                 worker.log()[-3000:])
            time.sleep(0.2)
        assert lock.expires > datetime.now(timezone.utc)
        job = bgp.jobs.wait(job_id, timeout=30)
        log = worker.log()
    assert (job.state, job.result) == ("Succeeded", 16)
    assert "heartbeat of job" in log  # the outage did reach the heartbeat thread


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_jobs_running_across_the_outage_record_their_end_once(redis_base, pg_proxy):
    """Jobs that finish while the store is cut keep their outcome and record it when it
    is back: each runs once, and none is left Executing for recovery."""
    env = stack_env(f"{redis_base}/{BROKER_DB}", redis_base, f"bgp-fly-{uuid.uuid4().hex[:8]}")
    bgp = publisher(env)
    worker_env = {**env, "BGP_TEST_PG_PORT": str(pg_proxy.port),
                  "BGP_TEST_LOCK_TIMEOUT": "30", "BGP_TEST_MONITOR_INTERVAL": "2"}
    with WorkerProcess(APP, worker_env, [env["BGP_TEST_QUEUE"]], concurrency=2) as worker:
        ids = [bgp.jobs.enqueue(J.sleep_plain, 3) for _ in range(4)]
        deadline = time.monotonic() + 30
        while sum(s == "Executing" for s in states_of(bgp, ids).values()) < 2:
            assert time.monotonic() < deadline, worker.log()[-3000:]
            time.sleep(0.05)
        pg_proxy.cut()  # two jobs run; they finish, and the next two are read, meanwhile
        time.sleep(10)
        pg_proxy.restore()
        jobs = [bgp.jobs.wait(job_id, timeout=60) for job_id in ids]
        log = worker.log()
    runs = [job_id for job_id in ids for state in bgp.jobs.history(job_id)
            if state.name == "Executing"]
    row = record("job store cut 10 s under running jobs", ids, runs,
                 stuck=sum(job.state not in FINAL for job in jobs), broker="redis")
    assert [job.state for job in jobs] == ["Succeeded"] * 4, row
    assert row["duplicated"] == 0 and row["lost"] == 0, row
    assert "unavailable while recording" in log  # final writes waited for the store
    assert "JobStateNotRecorded" not in log and "recovered (" not in log
