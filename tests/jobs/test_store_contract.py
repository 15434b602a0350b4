"""The job store contract, run against every store implementation."""
from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from celery_bgp import CommandEvent, EventStatus
from celery_bgp.jobs.memory import MemoryJobStore
from celery_bgp.jobs.model import JobKind, JobRecord, LogRecord, On, StateRecord
from celery_bgp.jobs.query import JobQuery, P, Q, QueryError
from celery_bgp.jobs.states import Enqueued
from celery_bgp.jobs.store import JobExists, JobNotFound, JobStore, StateConflict, delay_of

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
S = EventStatus


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def make_job(store, state="Enqueued", *, queue="default", priority=2, name="app.tasks:work",
             environment="default", created=None, properties=None, job_id=None):
    job_id = job_id or uuid.uuid4().hex
    created = created or at(0)
    job = JobRecord(id=job_id, name=name, kind=JobKind.CALLABLE, queue=queue, priority=priority,
                    environment=environment, state=state, created=created, modified=created,
                    args=[1, "two"], kwargs={"three": 3.0})
    store.create(job, StateRecord(state, created, "created for a test"), properties)
    return job_id


def run_as_worker(store, job_id, **final):
    """A worker's store calls for one job: read, Executing with the lock, the final state
    releasing it (``final``: more arguments for that write). Executing asks for no
    continuations, so their read runs once per job, in the final write."""
    store.get(job_id)
    store.transition(job_id, StateRecord("Executing", at(1)), expected={"Enqueued"},
                     holder="w/1", take_lock=60, durable=False, continuations=False)
    return store.transition(job_id, StateRecord("Succeeded", at(2)), expected={"Executing"},
                            holder="w/1", release_lock=True, **final)


def test_create_get_and_history(job_store):
    job_id = make_job(job_store, properties={"tenant": "acme"})
    job = job_store.get(job_id)
    assert job.name == "app.tasks:work"
    assert job.kind is JobKind.CALLABLE
    assert (job.args, job.kwargs) == ([1, "two"], {"three": 3.0})
    assert job.state == "Enqueued"
    [first] = job_store.states(job_id)
    assert (first.name, first.sequence, first.reason) == ("Enqueued", 1, "created for a test")
    assert job_store.properties(job_id) == {"tenant": "acme"}
    assert job_store.get("missing") is None
    assert job_store.states("missing") == []
    with pytest.raises(JobExists):
        make_job(job_store, job_id=job_id)


def test_transition_appends_checks_and_changes(job_store):
    job_id = make_job(job_store)
    change = job_store.transition(
        job_id, StateRecord("Executing", at(5), data={"worker": "w1"}),
        expected=["Enqueued"], changes={"execution_id": "e1", "attempt": 1, "worker": "w1"},
    )
    assert change.previous == "Enqueued"
    assert change.applied.sequence == 2
    job = job_store.get(job_id)
    assert (job.state, job.execution_id, job.attempt, job.worker) == ("Executing", "e1", 1, "w1")
    assert job.modified == at(5)
    with pytest.raises(StateConflict):
        job_store.transition(job_id, StateRecord("Executing", at(6)), expected=["Enqueued"])
    job_store.transition(job_id, StateRecord("Succeeded", at(7), data={"result": [1]}),
                         changes={"result": {"ok": True}})
    assert job_store.get(job_id).result == {"ok": True}
    assert [s.name for s in job_store.states(job_id)] == ["Enqueued", "Executing", "Succeeded"]
    assert job_store.states(job_id)[2].data == {"result": [1]}
    with pytest.raises(JobNotFound):
        job_store.transition("missing", StateRecord("Deleted", at(1)))


def test_transition_respects_the_lock_holder(job_store):
    job_id = make_job(job_store)
    assert job_store.acquire_lock(job_id, "alice", timeout=60)
    with pytest.raises(StateConflict, match="locked by alice"):
        job_store.transition(job_id, StateRecord("Deleted", T0), holder="bob")
    job_store.transition(job_id, StateRecord("Deleted", T0), holder="alice")
    assert job_store.get(job_id).state == "Deleted"


def test_continuations(job_store):
    parent = make_job(job_store, "Executing")
    child = make_job(job_store, "Awaiting")
    assert job_store.add_continuation(parent, child, On.FINISHED, True) == "Executing"
    [cont] = job_store.continuations(parent)
    assert (cont.child_id, cont.on, cont.delete_on_other) == (child, On.FINISHED, True)
    assert job_store.parents(child) == [cont]
    change = job_store.transition(parent, StateRecord("Succeeded", at(1)))
    assert change.continuations == (cont,)
    with pytest.raises(JobNotFound):
        job_store.add_continuation("missing", child, On.ANY)


def _attach_while_finishing(job_store) -> None:
    parent = make_job(job_store, "Executing")
    children = [make_job(job_store, "Awaiting") for _ in range(4)]
    seen_by_attach: list[str] = []
    seen_by_parent: list[str] = []
    start = threading.Barrier(len(children) + 1)

    def attach(child):
        start.wait()
        if job_store.add_continuation(parent, child, On.SUCCEEDED) == "Succeeded":
            seen_by_attach.append(child)

    def finish():
        start.wait()
        change = job_store.transition(parent, StateRecord("Succeeded", at(2)))
        seen_by_parent.extend(c.child_id for c in change.continuations)

    threads = [threading.Thread(target=attach, args=(c,)) for c in children]
    threads.append(threading.Thread(target=finish))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen_by_attach + seen_by_parent) == sorted(children)


def test_no_continuation_is_lost_when_the_parent_finishes_concurrently(job_store):
    for _ in range(25):
        _attach_while_finishing(job_store)


def test_locks(job_store):
    job_id = make_job(job_store)
    assert job_store.acquire_lock(job_id, "a", timeout=60)
    assert job_store.acquire_lock(job_id, "a", timeout=60)  # re-entrant for its holder
    assert not job_store.acquire_lock(job_id, "b", timeout=60)
    lock = job_store.get(job_id).lock
    assert lock.holder == "a" and lock.expires > lock.acquired
    assert job_store.heartbeat(job_id, "a", timeout=120)
    assert job_store.get(job_id).lock.expires > lock.expires
    assert not job_store.heartbeat(job_id, "b", timeout=60)
    job_store.release_lock(job_id, "b")  # not the holder: no-op
    assert job_store.get(job_id).lock.holder == "a"
    job_store.release_lock(job_id, "a")
    assert job_store.get(job_id).lock is None
    assert job_store.acquire_lock(job_id, "b", timeout=0.01)
    time.sleep(0.05)
    assert job_store.acquire_lock(job_id, "c", timeout=60)  # b's lock expired


def test_expired_lock_can_be_taken_and_is_reported(job_store):
    job_id = make_job(job_store, "Executing")
    assert job_store.acquire_lock(job_id, "dead-worker", timeout=0.001)
    time.sleep(0.05)
    later = datetime.now(timezone.utc) + timedelta(seconds=5)
    assert job_id in [j.id for j in job_store.expired(later)]
    assert job_store.acquire_lock(job_id, "rescuer", timeout=60)
    assert job_id not in [j.id for j in job_store.expired(datetime.now(timezone.utc))]


def test_a_running_command_is_never_reported_as_lost(job_store):
    """Commands hold no lock (Celery runs them): recovery must not requeue a long one."""
    cid = uuid.uuid4().hex
    job_store.record_events([ev(cid, S.DISPATCHED, 0), ev(cid, S.PROCESSING, 1)], "default")
    assert job_store.get(cid).state == "Executing"
    later = datetime.now(timezone.utc) + timedelta(days=1)
    assert cid not in [j.id for j in job_store.expired(later)]


def test_one_lock_winner_among_many(job_store):
    job_id = make_job(job_store)
    winners = []
    start = threading.Barrier(8)

    def grab(name):
        start.wait()
        if job_store.acquire_lock(job_id, name, timeout=60):
            winners.append(name)

    threads = [threading.Thread(target=grab, args=(f"h{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1


def test_typed_properties_data_and_logs(job_store):
    when = datetime(2026, 5, 4, 3, 2, 1, tzinfo=timezone.utc)
    job_id = make_job(job_store)
    props = {"text": "héllo", "count": 42, "ratio": 0.5, "flag": True, "when": when,
             "big": 2**53 + 1}
    job_store.set_properties(job_id, props)
    assert job_store.properties(job_id) == props
    assert type(job_store.properties(job_id)["flag"]) is bool
    with pytest.raises(QueryError):
        job_store.set_properties(job_id, {"bad": [1, 2]})
    with pytest.raises(QueryError):
        job_store.set_properties(job_id, {"long": "x" * 256})
    job_store.set_data(job_id, "progress", {"done": 3, "of": [1, 2]})
    job_store.set_data(job_id, "progress", {"done": 4})
    assert job_store.data(job_id) == {"progress": {"done": 4}}
    for i in range(5):
        job_store.add_log(job_id, LogRecord(20, f"line {i}", at(i)))
    job_store.add_log(job_id, LogRecord(40, "boom", at(9), exception="Traceback..."))
    logs = job_store.logs(job_id)
    assert [entry.message for entry in logs] == [f"line {i}" for i in range(5)] + ["boom"]
    assert logs[-1].exception == "Traceback..."
    assert [entry.message for entry in job_store.logs(job_id, limit=2)] == ["line 4", "boom"]


def test_cancel_request_is_per_execution(job_store):
    job_id = make_job(job_store, "Executing")
    assert not job_store.cancel_requested(job_id)
    job_store.request_cancel(job_id)
    assert job_store.cancel_requested(job_id)
    job_store.transition(job_id, StateRecord("Enqueued", at(1)))
    assert not job_store.cancel_requested(job_id)


@pytest.fixture
def population(job_store):
    env = uuid.uuid4().hex[:8]
    ids = {}
    for i, (state, queue, priority) in enumerate([
        ("Enqueued", "mail", 0), ("Failed", "mail", 2), ("Succeeded", "sms", 2),
        ("Failed", "sms", 4), ("Enqueued", "reports", 1),
    ]):
        ids[i] = make_job(job_store, state, queue=queue, priority=priority, environment=env,
                          created=at(i * 10), name=f"app.jobs:job{i}",
                          properties={"tenant": "acme" if i % 2 == 0 else "globex",
                                      "amount": i * 10, "score": i / 2, "vip": i == 3})
    job_store.transition(ids[1], StateRecord("Enqueued", at(100)))  # Failed in the past
    make_job(job_store, "Failed", environment="elsewhere")
    return env, ids


def found(store, env, where, **kw):
    return [j.id for j in store.search(JobQuery(where, environment=env, **kw))]


def test_search_by_fields(job_store, population):
    env, ids = population
    assert set(found(job_store, env, Q(state="Failed"))) == {ids[3]}
    assert set(found(job_store, env, Q(past_state="Failed"))) == {ids[1], ids[3]}
    assert set(found(job_store, env, Q(queue__in=["mail", "reports"]))) == {ids[0], ids[1], ids[4]}
    assert set(found(job_store, env, Q(priority__lte=1))) == {ids[0], ids[4]}
    assert set(found(job_store, env, Q(created__gte=at(30)))) == {ids[3], ids[4]}
    assert set(found(job_store, env, Q(name__like="app.jobs:job*"))) == set(ids.values())
    assert found(job_store, env, Q(name__like="*job2")) == [ids[2]]
    assert found(job_store, env, Q(id=ids[2])) == [ids[2]]
    assert job_store.count(JobQuery(Q(state="Failed"))) >= 2  # all environments


def test_search_by_typed_properties(job_store, population):
    env, ids = population
    assert set(found(job_store, env, P("tenant") == "acme")) == {ids[0], ids[2], ids[4]}
    assert set(found(job_store, env, P("amount") > 15)) == {ids[2], ids[3], ids[4]}
    assert set(found(job_store, env, P("amount") <= 10)) == {ids[0], ids[1]}
    assert set(found(job_store, env, P("score") >= 1.5)) == {ids[3], ids[4]}
    assert set(found(job_store, env, P("amount") == 20.0)) == {ids[2]}  # int and float compare
    assert found(job_store, env, P("vip") == True) == [ids[3]]  # noqa: E712
    assert found(job_store, env, P("amount") == "20") == []  # text is not a number
    assert set(found(job_store, env, P("tenant").like("glo*"))) == {ids[1], ids[3]}
    assert set(found(job_store, env, P("amount").isin([0, 40]))) == {ids[0], ids[4]}


def test_search_and_or_order_and_paging(job_store, population):
    env, ids = population
    where = (Q(queue="sms") & (P("tenant") == "acme")) | Q(priority=1)
    assert set(found(job_store, env, where)) == {ids[2], ids[4]}
    assert found(job_store, env, None, order_by=("created",)) == [ids[i] for i in range(5)]
    assert found(job_store, env, None, order_by=("-created",), limit=2) == [ids[4], ids[3]]
    assert found(job_store, env, None, order_by=("-created",), limit=2, offset=2) == [ids[2],
                                                                                    ids[1]]
    assert found(job_store, env, None, order_by=("priority", "-created"))[:2] == [ids[0], ids[4]]
    assert job_store.count(JobQuery(Q(queue="mail"), environment=env, limit=1)) == 2


def test_search_and_lock_skips_locked_jobs(job_store, population):
    env, ids = population
    job_store.acquire_lock(ids[0], "other", timeout=60)
    query = JobQuery(Q(state="Enqueued"), environment=env)
    got = job_store.search_and_lock(query, "me", timeout=60)
    assert [j.id for j in got] == [ids[4], ids[1]]
    assert all(job_store.get(j.id).lock.holder == "me" for j in got)
    assert job_store.search_and_lock(query, "third", timeout=60) == []


def test_purge_by_state_age_and_environment(job_store, population):
    env, ids = population
    assert job_store.purge(["Succeeded", "Failed"], before=at(25), environment=env) == 1
    assert job_store.get(ids[2]) is None
    assert job_store.get(ids[3]) is not None  # modified at 30
    assert job_store.purge(["Failed"], before=at(1000), environment=env, batch_size=1) == 1
    assert job_store.count(JobQuery(environment=env)) == 3


def ev(cid, status, seconds, retries=0, **kw):
    return CommandEvent(cid, status, at(seconds), command_name="shop.PlaceOrder",
                        retries=retries, **kw)


def test_command_events_become_a_job_in_life_order(job_store):
    cid = uuid.uuid4().hex
    job_store.record_events([ev(cid, S.PROCESSED, 3, worker="w1")], "env1")
    job_store.record_events([
        ev(cid, S.DISPATCHED, 1, command={"id": cid, "sku": "A"}, queue="orders"),
        ev(cid, S.PROCESSING, 2, worker="w1"),
    ], "env1")
    job = job_store.get(cid)
    assert (job.kind, job.name, job.state) == (JobKind.COMMAND, "shop.PlaceOrder", "Succeeded")
    assert job.args == [{"id": cid, "sku": "A"}]
    assert (job.queue, job.environment) == ("orders", "env1")
    events = job_store.events(cid)
    assert [e.status for e in events] == [S.PROCESSED, S.PROCESSING, S.DISPATCHED]
    assert events[2].command == {"id": cid, "sku": "A"}
    assert events[0].worker == "w1"
    assert set(found(job_store, "env1", Q(past_state="Executing"))) == {cid}


def test_command_retries_order_and_errors(job_store):
    cid = uuid.uuid4().hex
    from celery_bgp import ErrorInfo

    job_store.record_events([
        ev(cid, S.DISPATCHED, 0), ev(cid, S.PROCESSING, 1),
        ev(cid, S.PROCESSING, 2.0, retries=1),
        ev(cid, S.ERROR, 2.5, retries=1, error=ErrorInfo("ValueError", "bad", "tb")),
        ev(cid, S.RETRYING, 3.0, error=ErrorInfo("IOError", "flaky")),  # late write
    ], "default")
    assert job_store.get(cid).state == "Failed"
    latest = job_store.events(cid)[0]
    assert (latest.status, latest.error.type, latest.error.message) == (S.ERROR, "ValueError",
                                                                         "bad")


def test_each_command_event_is_one_state_in_life_order_whatever_the_writes(job_store):
    from celery_bgp import ErrorInfo

    cid = uuid.uuid4().hex
    boom = ErrorInfo("app.Boom", "first run fails", "tb")
    life = [
        ev(cid, S.DISPATCHED, 0, command={"id": cid}, queue="q"),
        ev(cid, S.PROCESSING, 1, worker="w1"),
        ev(cid, S.ERROR, 2, worker="w1", error=boom),
        ev(cid, S.DISPATCHED, 10, requeues=1, command={"id": cid}, queue="q"),
        ev(cid, S.PROCESSING, 11, requeues=1, worker="w2"),
        ev(cid, S.PROCESSED, 12, requeues=1, worker="w2"),
    ]
    # The worker's writes land before the publisher's, a batch is written twice (a
    # retry after a lost commit acknowledgement), two writers record the same events.
    for batch in ([life[1], life[2]], [life[0]], [life[4]], [life[4], life[5]],
                  [life[3], life[3]], life, [life[2], life[0]]):
        job_store.record_events(batch, "default")
    history = job_store.states(cid)
    assert [s.name for s in history] == ["Enqueued", "Executing", "Failed", "Enqueued",
                                         "Executing", "Succeeded"]
    assert [s.sequence for s in history] == [1, 2, 3, 4, 5, 6]
    assert [s.elected for s in history] == [e.timestamp for e in life]
    assert all("order" not in s.data for s in history)
    job = job_store.get(cid)
    assert (job.state, job.worker, job.created, job.modified) == ("Succeeded", "w2", at(0),
                                                                  at(12))
    assert [e.status for e in job_store.events(cid)] == [e.status for e in reversed(life)]


def test_a_late_event_goes_before_later_ones_and_engine_states_keep_their_place(job_store):
    cid = uuid.uuid4().hex
    job_store.record_events([ev(cid, S.DISPATCHED, 0), ev(cid, S.PROCESSING, 2)], "default")
    job_store.transition(cid, StateRecord("Deleted", at(3), "deleted by hand"))
    job_store.record_events([ev(cid, S.PROCESSED, 4), ev(cid, S.RETRYING, 1)], "default")
    history = job_store.states(cid)
    assert [s.name for s in history] == ["Enqueued", "Retrying", "Executing", "Deleted",
                                         "Succeeded"]
    assert [s.sequence for s in history] == [1, 2, 3, 4, 5]
    assert job_store.get(cid).state == "Succeeded"


def test_summary_for_dashboards(job_store, population):
    env, _ids = population
    summary = job_store.summary(env, since=at(25))
    assert summary.states == {"Enqueued": 3, "Succeeded": 1, "Failed": 1}
    assert summary.queues == {"mail": {"Enqueued": 2}, "sms": {"Succeeded": 1, "Failed": 1},
                              "reports": {"Enqueued": 1}}
    assert summary.finished_since == 1
    assert summary.oldest_waiting == {"mail": at(0), "reports": at(40)}


def _stalled_population(store) -> tuple[str, dict[str, str]]:
    """Jobs around a stalled-job bound of ``at(60)``, in an environment of their own."""
    env = f"stall-{uuid.uuid4().hex[:8]}"
    ids = {
        "oldest": make_job(store, created=at(-10), environment=env),
        "old": make_job(store, created=at(0), environment=env),
        "recent": make_job(store, created=at(100), environment=env),
        "running": make_job(store, "Executing", created=at(0), environment=env),
        "idle": make_job(store, "Idle", created=at(0), environment=env),
        # A year older than the rest: oldest first, the page of every environment's
        # holds it whatever other tests left in a shared database.
        "elsewhere": make_job(store, created=at(-365 * 86400), environment=f"{env}-other"),
    }
    # Enqueued long ago, delayed: stalled only once due (before the bound too).
    for name, created, until in [("delayed", 5, at(500)), ("due", 6, at(30)),
                                 ("due_at_bound", 7, at(60)),
                                 ("delayed_offset", 8, at(500).astimezone(
                                     timezone(timedelta(hours=-5))))]:
        ids[name] = make_job(store, "Created", created=at(created), environment=env)
        store.transition(ids[name], Enqueued(delay_until=until).record(at(created)))
    # Enqueued again after the bound: its previous Enqueued does not count.
    ids["enqueued_again"] = make_job(store, created=at(1), environment=env)
    store.transition(ids["enqueued_again"], StateRecord("Enqueued", at(70), "requeued"))
    # Retrying lasts until the engine enqueues the next attempt: an old one missed it.
    for name, seconds in [("retrying", 9), ("retrying_recent", 80)]:
        ids[name] = make_job(store, "Executing", created=at(seconds - 1), environment=env)
        store.transition(ids[name], StateRecord("Retrying", at(seconds),
                                                data={"attempt": 1, "delay": 30.0}))
    return env, ids


def _check_stalled(store, stalled) -> None:
    env, ids = _stalled_population(store)
    found = [job.id for job in stalled(at(60), env)]
    assert found == [ids["oldest"], ids["old"], ids["due"], ids["retrying"]]  # oldest first
    assert [job.id for job in stalled(at(60), env, limit=2)] == found[:2]
    assert stalled(at(-20), env) == []
    later = [job.id for job in stalled(at(1000), env)]
    assert set(later) == {ids[n] for n in ("oldest", "old", "due", "due_at_bound", "delayed",
                                           "delayed_offset", "enqueued_again", "recent",
                                           "retrying", "retrying_recent")}
    job = stalled(at(60), env)[0]
    assert (job.state, job.kind, job.environment) == ("Enqueued", JobKind.CALLABLE, env)
    # No environment: every environment's.
    assert ids["elsewhere"] in [j.id for j in stalled(at(60), None, limit=1000)]


def test_stalled_jobs_are_due_enqueued_or_old_retrying_callables_oldest_first(job_store):
    _check_stalled(job_store, job_store.stalled)


def test_a_stalled_command_is_never_reported(job_store):
    """Commands are sent and run by Celery: the job sweep never re-sends one."""
    cid, env = uuid.uuid4().hex, f"cmd-{uuid.uuid4().hex[:8]}"  # env: a page of its own
    job_store.record_events([ev(cid, S.DISPATCHED, 0)], env)
    assert job_store.get(cid).state == "Enqueued"
    assert job_store.stalled(at(1000), env) == []


def test_the_stalled_fallback_of_the_contract_agrees():
    """A store of your own that does not override ``stalled`` gets the contract's."""
    store = MemoryJobStore()
    _check_stalled(store, lambda before, env, limit=100: JobStore.stalled(store, before, env,
                                                                          limit))


def test_delays_are_stored_in_utc():
    offset = datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    record = Enqueued(delay_until=offset).record(T0)
    assert record.data["delay_until"] == "2026-01-01T10:00:00+00:00"
    assert delay_of(record) == offset
    assert delay_of(StateRecord("Enqueued", T0)) is None
    assert delay_of(StateRecord("Enqueued", T0, data={"delay_until": "nonsense"})) is None
