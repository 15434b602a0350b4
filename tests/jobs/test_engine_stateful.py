"""A stateful property test of the job engine over the store contract (memory, Django,
SQLAlchemy).

Hypothesis interleaves submits, continuations, message deliveries, workers that die
while a job is Executing, recovery, requeue / cancel / delete by hand, retries, and
election handlers that veto, replace (legally or not) or crash. After every step:

- every job is final, or waiting on something that will move it: a message in flight
  for its current execution, a parent, a lock that will expire, or an explicit Idle;
- its history starts with Created, is in order, records each state once, and ends
  in the job's current state.

The broker is a list (what a real broker adds, delivery and redelivery, is tested on
real workers elsewhere); the engine, the state machine and the store are the real ones.
"""
from __future__ import annotations

import contextlib
import itertools
import time
import types
import uuid

import pytest
from celery import Celery
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from celery_bgp import BackgroundProcessing
from celery_bgp.exceptions import BGPError
from celery_bgp.jobs import Deleted, Enqueued, Executing, Failed, Idle, On, Succeeded
from celery_bgp.jobs.memory import MemoryJobStore
from celery_bgp.jobs.monitor import recover
from celery_bgp.jobs.runner import RUNNABLE, run_job
from celery_bgp.jobs.states import FINAL_STATES
from celery_bgp.jobs.store import StateConflict

VETOES = ["none", "none", "delete", "fail", "idle", "illegal", "raise", "junk"]
ONS = ["succeeded", "failed", "finished", "any", "deleted"]
# Seconds: a dead worker's lock has expired by the next step, whatever the step is, so
# the outcome of each step does not depend on timing (hypothesis replays steps).
LOST_LOCK = 1e-6


class EngineMachine(RuleBasedStateMachine):
    """One BackgroundProcessing, its store, and a list standing in for the broker."""

    store_factory = staticmethod(MemoryJobStore)
    jobs_bundle = Bundle("jobs")

    def __init__(self) -> None:
        super().__init__()
        app = Celery(f"stateful-{uuid.uuid4().hex[:6]}", set_as_current=False)
        app.conf.update(broker_url="memory://")
        self.bgp = BackgroundProcessing(
            app, name=f"env-{uuid.uuid4().hex[:6]}", job_store=self.store_factory(),
            job_modules=["tests.apps"], event_write="sync",
            job_retry={"max_attempts": 2, "delays": [0]})
        self.jobs = self.bgp.jobs
        self.messages: list[tuple[str, str]] = []
        self.ids: list[str] = []
        self.veto = "none"
        self.jobs._publish = lambda job, when: self.messages.append((job.id, job.execution_id))
        # Remote control reaches no worker here; a cancel's store request is what counts.
        app.control.revoke = lambda *a, **k: None
        app.control.broadcast = lambda *a, **k: None
        self.jobs.election_handler(self._veto, priority=10)
        self.task = types.SimpleNamespace(request=types.SimpleNamespace(hostname="w@test"))

    def _veto(self, election):
        if election.candidate.name not in ("Executing", "Enqueued") or self.veto == "none":
            return None
        return {
            "delete": lambda: Deleted(reason="vetoed"),
            "fail": lambda: Failed(exception_type="Vetoed", message="vetoed"),
            "idle": lambda: Idle(reason="vetoed"),
            "illegal": lambda: Succeeded(reason="cannot follow a waiting state"),
            "raise": lambda: 1 / 0,
            "junk": lambda: "not a state",
        }[self.veto]()

    # -- rules ------------------------------------------------------------------------

    @initialize()
    def start(self):
        self.veto = "none"

    @rule(target=jobs_bundle, ok=st.booleans(), idle=st.booleans())
    def submit(self, ok, idle):
        fn = "tests.apps.jobs:add" if ok else "tests.apps.jobs:fail"
        args = [1, 2] if ok else ["planned failure"]
        job_id = self.jobs.submit(fn, args=args, idle=idle)
        self.ids.append(job_id)
        return job_id

    @rule(target=jobs_bundle, parent=jobs_bundle, on=st.sampled_from(ONS),
          delete_on_other=st.booleans())
    def continuation(self, parent, on, delete_on_other):
        job_id = self.jobs.submit("tests.apps.jobs:add", args=[2, 3],
                                  after=(parent, on, delete_on_other))
        self.ids.append(job_id)
        return job_id

    @precondition(lambda self: self.messages)
    @rule(pick=st.integers(0, 10_000))
    def deliver(self, pick):
        job_id, execution_id = self.messages.pop(pick % len(self.messages))
        run_job(self.jobs, self.task, job_id, execution_id)

    @precondition(lambda self: self.messages)
    @rule(pick=st.integers(0, 10_000))
    def worker_dies_while_executing(self, pick):
        """A worker takes the message, makes the job Executing, and is SIGKILLed."""
        job_id, execution_id = self.messages.pop(pick % len(self.messages))
        job = self.jobs.store.get(job_id)
        if job is None or job.execution_id != execution_id or job.state not in RUNNABLE:
            return
        holder = f"dead/{execution_id}"
        try:
            change = self.jobs.machine.change(
                job_id, Executing(worker="dead", execution_id=execution_id,
                                  attempt=job.attempt + 1),
                holder=holder, expected=RUNNABLE, take_lock=LOST_LOCK, job=job,
                changes={"attempt": job.attempt + 1, "worker": "dead"}, durable=False)
        except StateConflict:
            return
        if not change.won:
            self.jobs.store.release_lock(job_id, holder)  # the veto ran; it died after

    @rule()
    def recovery(self):
        time.sleep(0.001)
        recover(self.jobs)

    @rule(job_id=jobs_bundle, action=st.sampled_from(["requeue", "cancel", "delete"]))
    def by_hand(self, job_id, action):
        # Not allowed from its state, or locked by a (dead) worker: nothing changed.
        with contextlib.suppress(BGPError):
            getattr(self.jobs, action)(job_id)

    @rule(veto=st.sampled_from(VETOES))
    def set_veto(self, veto):
        self.veto = veto

    # -- invariants -------------------------------------------------------------------

    @invariant()
    def every_job_is_final_or_will_move(self):
        in_flight = set(self.messages)
        for job_id in self.ids:
            job = self.jobs.store.get(job_id)
            assert job is not None, job_id
            if job.state in FINAL_STATES or job.state == Idle.name:
                continue
            if job.state == Enqueued.name:
                assert (job_id, job.execution_id) in in_flight, \
                    f"{job_id} is Enqueued with no message in flight: {self._story(job_id)}"
            elif job.state == Executing.name:
                assert job.lock is not None, f"{job_id} Executing without a lock"
            elif job.state == "Awaiting":
                self._awaits_something(job_id)
            else:
                raise AssertionError(f"{job_id} stranded in {job.state}: {self._story(job_id)}")

    def _awaits_something(self, job_id):
        awaiting = self.jobs.history(job_id)[-1].data
        parent = self.jobs.store.get(awaiting["parent_id"])
        if parent.state not in FINAL_STATES:
            return
        on = On.parse(awaiting["on"])
        assert not on.matches(parent.state), (
            f"{job_id} still Awaiting its parent, which is {parent.state} ({on.to_text()})")
        assert not awaiting["delete_on_other"], (
            f"{job_id} still Awaiting, its parent ended {parent.state} (delete_on_other)")

    @invariant()
    def history_is_in_order_and_each_state_recorded_once(self):
        for job_id in self.ids:
            history = self.jobs.history(job_id)
            assert history[0].name == "Created", self._story(job_id)
            assert [s.sequence for s in history] == list(range(1, len(history) + 1))
            assert all(a.elected <= b.elected for a, b in itertools.pairwise(history))
            assert history[-1].name == self.jobs.store.get(job_id).state

    def _story(self, job_id):
        return [(s.name, s.reason) for s in self.jobs.history(job_id)]


def run(machine: type[RuleBasedStateMachine], examples: int) -> None:
    run_state_machine_as_test(machine, settings=settings(
        max_examples=examples, stateful_step_count=30, deadline=None, database=None,
        suppress_health_check=list(HealthCheck)))


def test_engine_on_the_memory_store():
    run(EngineMachine, examples=100)


@pytest.mark.django_db(transaction=True)
def test_engine_on_the_django_store():
    from celery_bgp.contrib.django.store import DjangoJobStore

    class DjangoEngineMachine(EngineMachine):
        store_factory = staticmethod(DjangoJobStore)

    run(DjangoEngineMachine, examples=25)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_engine_on_the_sqlalchemy_store(kind, sa_databases):
    from celery_bgp.contrib.sqlalchemy import SQLAlchemyJobStore

    url = sa_databases.url(kind)

    class SQLAlchemyEngineMachine(EngineMachine):
        store_factory = staticmethod(lambda: SQLAlchemyJobStore(url))

    run(SQLAlchemyEngineMachine, examples=25)
