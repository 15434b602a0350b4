"""The jobs engine in one process (eager Celery, memory store): every feature's logic.

The same features run through real workers, brokers and the Django store in
tests/jobs/test_workers.py.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from celery import Celery

from celery_bgp import BackgroundProcessing, ImproperlyConfigured
from celery_bgp.jobs import (
    Deleted,
    Executing,
    JobLocked,
    JobNotAllowed,
    JobNotFound,
    On,
    P,
    Q,
    RetryPolicy,
    State,
    TransitionNotAllowed,
)
from celery_bgp.jobs.memory import MemoryJobStore
from celery_bgp.jobs.model import JobKind, JobRecord, StateRecord
from celery_bgp.jobs.monitor import purge, recover
from tests.apps import jobs as J


def make(name=None, store=None, **options):
    app = Celery(f"jobs-{uuid.uuid4().hex[:6]}", set_as_current=False)
    app.conf.update(broker_url="memory://", task_always_eager=True)
    options.setdefault("job_modules", ["tests.apps"])
    options.setdefault("event_write", "sync")
    options.setdefault("job_retry", {"max_attempts": 1})
    return BackgroundProcessing(app, name=name or f"env-{uuid.uuid4().hex[:6]}",
                                job_store=store or MemoryJobStore(), **options)


@pytest.fixture
def bgp():
    return make()


def states(bgp, job_id):
    return [s.name for s in bgp.jobs.history(job_id)]


def test_enqueue_runs_the_callable_and_records_each_state(bgp):
    job_id = bgp.jobs.enqueue(J.add, 2, 3)
    job = bgp.jobs.get(job_id)
    assert (job.state, job.result, job.attempt, job.kind) == ("Succeeded", 5, 1, JobKind.CALLABLE)
    assert job.name == "tests.apps.jobs:add"
    assert states(bgp, job_id) == ["Created", "Enqueued", "Executing", "Succeeded"]
    succeeded = bgp.jobs.history(job_id)[-1]
    assert succeeded.data["result"] == 5 and succeeded.data["duration"] >= 0


@pytest.mark.parametrize(("fn", "args", "expected"), [
    (J.Mailer.render, ["ann"], "Hello ann"),
    (J.Mailer.kind, ["!"], "Mailer!"),
    (J.Mailer.send, ["bob"], "built@example.com -> bob"),
    (J.Mailer("ignored@example.com").send, ["eve"], "built@example.com -> eve"),
    ("tests.apps.jobs:add", [1, 2], 3),
])
def test_callable_kinds_and_the_activator(bgp, fn, args, expected):
    built = []

    def activator(cls):
        built.append(cls)
        return cls("built@example.com")

    bgp.jobs.activator = activator
    job_id = bgp.jobs.submit(fn, args=args)
    assert bgp.jobs.get(job_id).result == expected


def test_only_allowed_modules_run():
    bgp = make(job_modules=["tests.apps.jobs"])
    with pytest.raises(JobNotAllowed, match="bgp_job_modules"):
        bgp.jobs.enqueue(print, "x")
    with pytest.raises(JobNotAllowed):
        bgp.jobs.enqueue("tests.apps.forbidden:boom")
    with pytest.raises(ImproperlyConfigured, match="lambda"):
        bgp.jobs.enqueue(lambda: 1)
    with pytest.raises(ImproperlyConfigured, match="JSON-serializable"):
        bgp.jobs.enqueue(J.add, object(), 1)
    # A row naming a module outside the list (a tampered store) fails without importing it.
    now = datetime.now(timezone.utc)
    sneaky = JobRecord(id=uuid.uuid4().hex, name="tests.apps.forbidden:boom",
                       kind=JobKind.CALLABLE, queue="celery", priority=2,
                       environment=bgp.name, state="Created", created=now, modified=now)
    bgp.jobs.store.create(sneaky, StateRecord("Created", now))
    bgp.jobs.requeue(sneaky.id)
    assert bgp.jobs.get(sneaky.id).state == "Failed"
    assert "not an allowed job module" in bgp.jobs.history(sneaky.id)[-1].data["message"]
    assert "tests.apps.forbidden" not in sys.modules


def test_context_properties_data_and_logs(bgp):
    job_id = bgp.jobs.submit(J.uses_context, args=["report"])
    assert bgp.jobs.get(job_id).result == {"id": job_id}
    assert bgp.jobs.store.properties(job_id) == {"label": "report", "size": 3}
    assert bgp.jobs.store.data(job_id) == {"progress": {"done": 3, "of": 3}}
    logs = bgp.jobs.logs(job_id)
    assert [(entry.level, entry.message) for entry in logs] == [
        (logging.INFO, "working on report"), (logging.WARNING, "almost done")]
    quiet = make(job_log_level="WARNING")
    job_id = quiet.jobs.submit(J.uses_context, args=["x"])
    assert [entry.message for entry in quiet.jobs.logs(job_id)] == ["almost done"]


def test_properties_at_enqueue_are_queryable(bgp):
    a = bgp.jobs.submit(J.add, args=[1, 1], properties={"tenant": "acme", "amount": 10})
    b = bgp.jobs.submit(J.add, args=[1, 1], properties={"tenant": "globex", "amount": 20})
    assert [j.id for j in bgp.jobs.search(P("tenant") == "acme")] == [a]
    assert [j.id for j in bgp.jobs.search(P("amount") > 15)] == [b]
    assert bgp.jobs.count(Q(state="Succeeded")) == 2
    assert bgp.jobs.count(Q(name__like="*:add") & (P("amount") < 15)) == 1


def test_retries_follow_the_policy_and_are_states(bgp, sink):
    key = f"retry-{uuid.uuid4().hex}"
    job_id = bgp.jobs.submit(J.fail_times, args=[key, 2],
                             retry=RetryPolicy(max_attempts=5, delays=[0]))
    job = bgp.jobs.get(job_id)
    assert (job.state, job.result, job.attempt) == ("Succeeded", 3, 3)
    assert states(bgp, job_id).count("Retrying") == 2
    retrying = [s for s in bgp.jobs.history(job_id) if s.name == "Retrying"]
    assert retrying[0].data["exception_type"] == "ConnectionError"
    assert retrying[0].reason == "attempt 1 of 5 failed"


def test_retry_gives_up_and_respects_fatal_and_retry_on(bgp):
    gave_up = bgp.jobs.submit(J.fail, args=["always"], retry={"max_attempts": 3, "delays": [0]})
    assert bgp.jobs.get(gave_up).state == "Failed"
    assert states(bgp, gave_up).count("Executing") == 3
    fatal = bgp.jobs.submit(J.fail, args=["x"], retry=RetryPolicy(5, [0], fatal=[ValueError]))
    assert states(bgp, fatal).count("Executing") == 1
    other = bgp.jobs.submit(J.fail, args=["x"], retry=RetryPolicy(5, [0], retry_on=[KeyError]))
    assert states(bgp, other).count("Executing") == 1
    failed = bgp.jobs.history(other)[-1]
    assert (failed.data["exception_type"], failed.data["message"]) == ("ValueError", "x")
    assert "raise ValueError(message)" in failed.data["traceback"]


def test_continuations_on_each_parent_outcome(bgp):
    ok = bgp.jobs.submit(J.add, args=[1, 1], idle=True)
    bad = bgp.jobs.submit(J.fail, args=["no"], idle=True)
    on_ok = bgp.jobs.submit(J.add, args=[2, 2], after=(ok, "succeeded"))
    on_fail = bgp.jobs.submit(J.add, args=[3, 3], after=(bad, On.FAILED))
    on_any = bgp.jobs.submit(J.add, args=[4, 4], after=(bad, "finished"))
    never = bgp.jobs.submit(J.add, args=[5, 5], after=(bad, "succeeded"))
    dropped = bgp.jobs.submit(J.add, args=[6, 6], after=(bad, "succeeded", True))
    assert {bgp.jobs.get(j).state for j in (on_ok, on_fail, on_any, never, dropped)} == {
        "Awaiting"}
    bgp.jobs.requeue(ok)
    bgp.jobs.requeue(bad)
    assert bgp.jobs.get(on_ok).result == 4
    assert bgp.jobs.get(on_fail).state == "Succeeded"
    assert bgp.jobs.get(on_any).state == "Succeeded"
    assert bgp.jobs.get(never).state == "Awaiting"
    assert bgp.jobs.get(dropped).state == "Deleted"
    assert bgp.jobs.store.parents(on_ok)[0].parent_id == ok


def test_continuation_of_a_finished_parent_runs_at_once(bgp):
    parent = bgp.jobs.enqueue(J.add, 1, 1)
    child = bgp.jobs.submit(J.add, args=[1, 2], after=(parent, "succeeded"))
    assert bgp.jobs.get(child).result == 3
    with pytest.raises(JobNotFound):
        bgp.jobs.submit(J.add, args=[1, 2], after=("missing", "any"))


def test_concurrent_continuations_are_never_lost():
    """Parents finish on other threads while children attach: every child runs once."""
    bgp = make()
    bgp.app.conf.task_always_eager = False
    published = []
    bgp.jobs._publish = lambda job, when: published.append(job.id)
    for _ in range(20):
        parent = bgp.jobs.submit(J.add, args=[1, 1], idle=True)
        bgp.jobs.store.transition(parent, Executing(worker="w", execution_id="e").record())
        children = []
        start = threading.Barrier(5)

        def attach(parent=parent, start=start, children=children):
            start.wait()
            children.append(bgp.jobs.submit(J.add, args=[0, 0], after=(parent, "succeeded")))

        def finish(parent=parent, start=start):
            from celery_bgp.jobs import Succeeded
            start.wait()
            bgp.jobs.change_state(parent, Succeeded())

        threads = [threading.Thread(target=attach) for _ in range(4)]
        threads.append(threading.Thread(target=finish))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for child in children:
            assert bgp.jobs.get(child).state == "Enqueued"
            assert published.count(child) == 1


def test_election_handler_vetoes_a_tenant_and_event_handlers_see_everything(bgp):
    seen = []

    @bgp.jobs.election_handler(priority=10)
    def tenant_guard(election):
        if (election.candidate.name == "Executing"
                and bgp.jobs.store.properties(election.job.id).get("tenant") == "blocked"):
            return Deleted(reason="tenant blocked")
        return None

    @bgp.jobs.on_state
    def watch(applied):
        seen.append((applied.job.id, applied.previous, applied.state.name))

    blocked = bgp.jobs.submit(J.add, args=[1, 1], properties={"tenant": "blocked"})
    allowed = bgp.jobs.submit(J.add, args=[1, 1], properties={"tenant": "ok"})
    assert bgp.jobs.get(blocked).state == "Deleted"
    assert bgp.jobs.history(blocked)[-1].reason == "tenant blocked"
    assert bgp.jobs.get(allowed).state == "Succeeded"
    # Every applied state is announced, in order, Created too (written with the next one).
    assert [s for j, _, s in seen if j == allowed] == ["Created", "Enqueued", "Executing",
                                                        "Succeeded"]
    assert [(p, s) for j, p, s in seen if j == blocked] == [("", "Created"),
                                                           ("Created", "Enqueued"),
                                                           ("Enqueued", "Deleted")]


def test_custom_states_and_transitions(bgp):
    import dataclasses

    @dataclasses.dataclass(kw_only=True)
    class Paused(State):
        name = "Paused"
        until: str = ""

    bgp.jobs.states.register(Paused, from_states=["Idle", "Enqueued"], to_states=["Enqueued"])
    job_id = bgp.jobs.submit(J.add, args=[1, 1], idle=True)
    bgp.jobs.change_state(job_id, Paused(until="monday", reason="weekend"))
    assert bgp.jobs.history(job_id)[-1].data == {"until": "monday"}
    with pytest.raises(TransitionNotAllowed):
        bgp.jobs.change_state(job_id, Deleted())
    bgp.jobs.requeue(job_id)
    assert bgp.jobs.get(job_id).state == "Succeeded"


def test_moves_by_hand_need_the_lock(bgp):
    job_id = bgp.jobs.submit(J.add, args=[1, 1], idle=True)
    assert bgp.jobs.store.acquire_lock(job_id, "someone-else", timeout=60)
    with pytest.raises(JobLocked, match="someone-else"):
        bgp.jobs.delete(job_id)
    bgp.jobs.store.release_lock(job_id, "someone-else")
    bgp.jobs.delete(job_id)
    assert bgp.jobs.get(job_id).state == "Deleted"
    bgp.jobs.requeue(job_id)  # a deleted job can be brought back
    assert bgp.jobs.get(job_id).state == "Succeeded"


def test_middleware_worker_and_per_job(bgp):
    calls = []

    def timing(context, call_next):
        calls.append("worker in")
        result = call_next(context)
        calls.append("worker out")
        return result

    def audit(context, call_next):
        calls.append(f"audit {context.input}")
        result = call_next(context)
        calls.append(f"audit out {context.input}")
        return result

    def double(context, call_next):
        return call_next(context) * 2

    def skip_reports(context, call_next):
        return "skipped" if context.job.queue == "reports" else call_next(context)

    bgp.jobs.use(timing)
    bgp.jobs.use(skip_reports, queues=["reports"])
    bgp.jobs.register_middleware("audit", audit)
    bgp.jobs.register_middleware("double", double)
    job_id = bgp.jobs.submit(J.add, args=[2, 3], middleware=[("audit", {"who": "ops"}), "double"])
    assert bgp.jobs.get(job_id).result == 10
    assert calls == ["worker in", "audit {'who': 'ops'}", "audit out {'who': 'ops'}",
                     "worker out"]
    skipped = bgp.jobs.submit(J.fail, args=["never runs"], queue="reports")
    assert bgp.jobs.get(skipped).result == "skipped"
    unknown = bgp.jobs.submit(J.add, args=[1, 1], middleware=["nope"])
    assert bgp.jobs.get(unknown).state == "Failed"
    assert "not registered" in bgp.jobs.history(unknown)[-1].data["message"]


def test_cancel_a_waiting_job(bgp):
    job_id = bgp.jobs.submit(J.add, args=[1, 1], idle=True)
    bgp.jobs.cancel(job_id)
    assert bgp.jobs.get(job_id).state == "Cancelled"


def test_non_json_results_are_kept_as_text(bgp):
    job_id = bgp.jobs.enqueue(J.not_json)
    assert bgp.jobs.get(job_id).result.startswith("<object object")


def test_delays_are_stored_on_the_enqueued_state(bgp):
    bgp.app.conf.task_always_eager = False
    bgp.jobs._publish = lambda job, when: None
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    a = bgp.jobs.submit(J.add, args=[1, 1], delay_until=later)
    b = bgp.jobs.submit(J.add, args=[1, 1], delay=timedelta(minutes=5))
    assert bgp.jobs.history(a)[-1].data["delay_until"] == later.isoformat()
    assert bgp.jobs.history(b)[-1].data["delay_until"] > datetime.now(timezone.utc).isoformat()
    with pytest.raises(ImproperlyConfigured, match="not both"):
        bgp.jobs.submit(J.add, args=[1, 1], delay=5, delay_until=later)


def test_recover_requeues_or_fails_jobs_whose_worker_died(bgp):
    job_id = bgp.jobs.submit(J.add, args=[1, 1], idle=True)
    bgp.jobs.store.transition(job_id, Executing(worker="dead", execution_id="e1").record())
    assert bgp.jobs.store.acquire_lock(job_id, "dead/1/e1", timeout=0.01)
    time.sleep(0.05)
    later = datetime.now(timezone.utc) + timedelta(seconds=1)
    assert recover(bgp.jobs, now=later) == 1
    assert bgp.jobs.get(job_id).state == "Succeeded"  # requeued and (eagerly) run again
    assert "worker lost" in [s for s in bgp.jobs.history(job_id) if s.name == "Enqueued"][-1].reason
    failing = make(job_on_worker_lost="fail")
    job_id = failing.jobs.submit(J.add, args=[1, 1], idle=True)
    failing.jobs.store.transition(job_id, Executing(worker="dead", execution_id="e1").record())
    assert recover(failing.jobs, now=later) == 1
    assert failing.jobs.get(job_id).state == "Failed"


def test_retention_purges_old_finished_jobs_of_its_environment_only():
    store = MemoryJobStore()
    a, b = make("env-a", store, job_retention=60), make("env-b", store, job_retention=60)
    old_a, old_b = a.jobs.enqueue(J.add, 1, 1), b.jobs.enqueue(J.add, 1, 1)
    waiting = a.jobs.submit(J.add, args=[1, 1], idle=True)
    assert purge(a.jobs, now=datetime.now(timezone.utc) + timedelta(minutes=5)) == 1
    assert a.jobs.get(old_a) is None
    assert b.jobs.get(old_b) is not None and a.jobs.get(waiting) is not None


def test_environments_share_a_store_but_not_their_jobs():
    store = MemoryJobStore()
    a, b = make("tenant-a", store), make("tenant-b", store)
    ja, jb = a.jobs.enqueue(J.add, 1, 1), b.jobs.enqueue(J.add, 2, 2)
    assert [j.id for j in a.jobs.search()] == [ja]
    assert [j.id for j in b.jobs.search()] == [jb]
    assert a.jobs.count(all_environments=True) == 2
    assert store.get(jb).environment == "tenant-b"


def test_recurring_jobs_are_beat_entries_that_enqueue_tracked_jobs(bgp):
    from celery.schedules import crontab

    bgp.jobs.recurring("nightly-sum", J.add, crontab(hour=3, minute=0), args=[20, 22],
                       queue="reports")
    entry = bgp.app.conf.beat_schedule[f"bgp:{bgp.name}:recurring:nightly-sum"]
    assert entry["task"] == "bgp.jobs.recurring"
    assert entry["args"] == ("nightly-sum",)
    job_id = bgp.app.tasks["bgp.jobs.recurring"].apply(args=("nightly-sum",)).get()
    job = bgp.jobs.get(job_id)
    assert (job.result, job.queue) == (42, "reports")
    assert bgp.jobs.store.properties(job_id) == {"recurring": "nightly-sum"}
    assert f"bgp:{bgp.name}:purge" in bgp.app.conf.beat_schedule


def test_jobs_need_a_store():
    app = Celery(set_as_current=False)
    with pytest.raises(ImproperlyConfigured, match="needs a job store"):
        BackgroundProcessing(app, name=f"x{uuid.uuid4().hex}").jobs  # noqa: B018


def test_every_applied_state_is_announced_in_order_created_included(bgp):
    seen = []
    bgp.jobs.on_state(lambda applied: seen.append((applied.job.id, applied.previous,
                                                   applied.state.name)))
    parent = bgp.jobs.submit(J.add, args=[1, 1], idle=True)
    child = bgp.jobs.submit(J.add, args=[2, 2], after=(parent, "succeeded"))
    bgp.jobs.requeue(parent)
    assert [(p, s) for j, p, s in seen if j == parent] == [
        ("", "Created"), ("Created", "Idle"), ("Idle", "Enqueued"),
        ("Enqueued", "Executing"), ("Executing", "Succeeded")]
    assert [(p, s) for j, p, s in seen if j == child] == [
        ("", "Created"), ("Created", "Awaiting"), ("Awaiting", "Enqueued"),
        ("Enqueued", "Executing"), ("Executing", "Succeeded")]
    assert [s.name for s in bgp.jobs.history(child)] == [
        "Created", "Awaiting", "Enqueued", "Executing", "Succeeded"]


def test_a_refused_election_fails_a_waiting_job_and_leaves_a_final_one_alone(bgp):
    from celery_bgp.jobs import Succeeded
    from celery_bgp.jobs.machine import REFUSED_ELECTION

    @bgp.jobs.election_handler(priority=10)
    def illegal(election):
        return Succeeded(reason="skip it") if election.candidate.name == "Enqueued" else None

    job_id = bgp.jobs.submit(J.add, args=[1, 1])
    failed = bgp.jobs.history(job_id)[-1]
    assert (failed.name, failed.data["exception_type"]) == ("Failed", REFUSED_ELECTION)
    assert "illegal elected Succeeded, which cannot follow Created" in failed.data["message"]
    # From a final state nothing is forced: the change is refused and the job stays Failed.
    with pytest.raises(TransitionNotAllowed, match="cannot follow Failed"):
        bgp.jobs.requeue(job_id)
    assert bgp.jobs.get(job_id).state == "Failed"


def test_a_transition_the_registry_does_not_allow_is_refused_before_election(bgp):
    job_id = bgp.jobs.submit(J.add, args=[1, 1], idle=True)
    with pytest.raises(TransitionNotAllowed, match="cannot go from Idle to Executing"):
        bgp.jobs.change_state(job_id, Executing(worker="w", execution_id="x"))
    assert bgp.jobs.get(job_id).state == "Idle"


def test_a_continuation_that_cannot_move_does_not_keep_its_siblings_waiting(bgp):
    """Found by the stateful test: a child deleted by hand made the parent's release
    raise, and the next child stayed Awaiting forever."""
    parent = bgp.jobs.submit(J.add, args=[1, 1], idle=True)
    gone = bgp.jobs.submit(J.add, args=[1, 1], after=(parent, "failed", True))
    waiting = bgp.jobs.submit(J.add, args=[2, 2], after=(parent, "succeeded"))
    bgp.jobs.delete(gone)
    bgp.jobs.requeue(parent)
    assert bgp.jobs.get(parent).state == "Succeeded"
    assert bgp.jobs.get(gone).state == "Deleted"
    assert bgp.jobs.get(waiting).state == "Succeeded"


def test_a_change_expecting_another_state_is_a_conflict_not_an_election(bgp):
    from celery_bgp.jobs.store import StateConflict

    @bgp.jobs.election_handler(priority=10)
    def crash(election):
        raise RuntimeError("must not be asked")

    job_id = bgp.jobs.submit(J.add, args=[1, 1], idle=True)  # the veto fails it: Failed
    assert bgp.jobs.get(job_id).state == "Failed"
    with pytest.raises(StateConflict, match="not Awaiting"):
        bgp.jobs.machine.change(job_id, Deleted(), expected={"Awaiting"})


def test_the_client_reads_properties_and_data(bgp):
    job_id = bgp.jobs.submit(J.uses_context, args=["x"], properties={"tenant": "acme"})
    assert bgp.jobs.properties(job_id)["tenant"] == "acme"
    assert bgp.jobs.properties(job_id)["label"] == "x"
    assert bgp.jobs.data(job_id) == {"progress": {"done": 3, "of": 3}}


def test_a_jobs_message_shows_its_arguments_as_celery_would():
    """Logs, Flower and ``celery inspect`` show a job's message arguments (its id and
    execution id) exactly as Celery's own repr of them."""
    from celery import signals
    from celery.utils.saferepr import saferepr

    bgp = make()
    bgp.app.conf.task_always_eager = False
    seen = []

    def capture(headers=None, **_):
        seen.append(headers)

    signals.before_task_publish.connect(capture, weak=False)
    try:
        job_id = bgp.jobs.enqueue(J.add, 1, 2)
    finally:
        signals.before_task_publish.disconnect(capture)
    [headers] = [h for h in seen if h.get("id") == job_id]
    job = bgp.jobs.get(job_id)
    assert headers["argsrepr"] == saferepr((job.id, job.execution_id))
    assert headers["kwargsrepr"] == "{}"
