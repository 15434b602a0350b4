"""Edge cases of the store contract, run on every store like the contract suite.

Where SQL backends differ from Python (case-insensitive collations, LIKE's own
wildcards, int and float columns, the SET order of MySQL's UPDATE), the stores
must still agree with the in-memory reference.
"""
from __future__ import annotations

import random
import threading
import time
import uuid

import pytest

from celery_bgp import CommandEvent, EventStatus
from celery_bgp.jobs.model import StateRecord
from celery_bgp.jobs.query import JobQuery, P, Q
from tests.jobs.test_store_contract import at, found, make_job

S = EventStatus


def test_text_compares_exactly(job_store):
    env = uuid.uuid4().hex[:8]
    base = uuid.uuid4().hex[:10]
    upper = make_job(job_store, "Failed", environment=env, job_id=f"AbC{base}",
                     properties={"tenant": "ACME"}, name="app.Jobs:Run")
    lower = make_job(job_store, "Failed", environment=env, job_id=f"abc{base}",
                     properties={"tenant": "acmé"}, name="app.jobs:run")
    assert job_store.get(upper).id != job_store.get(lower).id  # two jobs, not one
    assert found(job_store, env, Q(id=f"abc{base}")) == [lower]
    assert found(job_store, env, Q(state="failed")) == []
    assert found(job_store, env, P("tenant") == "acme") == []
    assert found(job_store, env, P("tenant") == "ACME") == [upper]
    assert found(job_store, env, P("tenant").like("ac*")) == [lower]
    assert found(job_store, env, Q(name__like="app.J*")) == [upper]
    assert found(job_store, env, Q(past_state="failed")) == []


def test_like_has_one_wildcard(job_store):
    env = uuid.uuid4().hex[:8]
    odd = "a%b_c?d[e]\\f*g"
    job = make_job(job_store, environment=env, name=odd, properties={"code": odd})
    other = make_job(job_store, environment=env, name="aXbYcZd(e)/f-h",
                     properties={"code": "aXbYcZd(e)/f-h"})
    for pattern, expected in [
        ("a%b*", [job]), ("a_b*", []), ("a*b_c?d*", [job]), ("a?b*", []), ("*[e]*", [job]),
        ("*[a-z]*", []), ("*\\f**", [job]), ("*g", [job]), ("a%b_c?d[e]\\f*g", [job]),
        ("A%*", []), ("*e]\\f", []), ("a*h", [other]), ("*", [job, other]),
    ]:
        assert sorted(found(job_store, env, P("code").like(pattern))) == sorted(expected), \
            pattern
        assert sorted(found(job_store, env, Q(name__like=pattern))) == sorted(expected), \
            pattern


def test_ints_and_floats_compare_as_numbers(job_store):
    env = uuid.uuid4().hex[:8]
    ids = {value: make_job(job_store, environment=env, properties={"n": value})
           for value in (10, 15, 15.5, 16, -(2**63), 2**63 - 1)}
    text = make_job(job_store, environment=env, properties={"n": "15"})
    flag = make_job(job_store, environment=env, properties={"n": True})

    def hits(condition):
        return {value for value, job_id in ids.items()
                if job_id in found(job_store, env, condition)}

    assert hits(P("n") < 15.5) == {10, 15, -(2**63)}
    assert hits(P("n") <= 15.5) == {10, 15, 15.5, -(2**63)}
    assert hits(P("n") > 15.5) == {16, 2**63 - 1}
    assert hits(P("n") >= 15.5) == {15.5, 16, 2**63 - 1}
    assert hits(P("n") == 15.5) == {15.5}
    assert hits(P("n") == 16.0) == {16}
    assert hits(P("n") > 2**70) == set()
    assert hits(P("n") < 2**70) == set(ids)
    assert hits(P("n") >= -(2**70)) == set(ids)
    assert hits(P("n") < float("inf")) == set(ids)
    assert hits(P("n") > float("-inf")) == set(ids)
    assert hits(P("n").isin([15.5, 10, 2**80, "16"])) == {10, 15.5}
    assert set(found(job_store, env, P("n").isin(["15", 1.0]))) == {text}
    assert found(job_store, env, P("n") == True) == [flag]  # noqa: E712 - a bool
    assert found(job_store, env, P("n") == 1) == []  # True is not the number 1
    # and-ed conditions on one property: one value must satisfy them all
    assert hits((P("n") >= 10) & (P("n") < 16)) == {10, 15, 15.5}
    assert hits((P("n") > 10) & Q(state="Enqueued") & (P("n") <= 15.5)) == {15, 15.5}
    assert hits((P("n") > 10) & (P("n") < 11)) == set()
    assert hits((P("n") > float("inf")) | (P("n") == 10)) == {10}
    assert found(job_store, env, (P("n") == "15") & (P("n") == 15)) == []
    assert found(job_store, env, (P("n") >= "1") & (P("n") < "2")) == [text]
    assert hits((P("n") >= 15) & (P("other") == 1)) == set()


def test_a_property_can_change_type(job_store):
    job_id = make_job(job_store, properties={"x": 1})
    job_store.set_properties(job_id, {"x": "one", "y": 2.5})
    assert job_store.properties(job_id) == {"x": "one", "y": 2.5}
    env = job_store.get(job_id).environment
    assert job_id not in found(job_store, env, P("x") == 1)
    assert job_id in found(job_store, env, P("x") == "one")


def test_data_holds_any_json(job_store):
    job_id = make_job(job_store)
    values = {"none": None, "list": [1, "2", {"3": [4.5]}], "text": "é", "flag": False,
              "nested": {"b": 1, "a": [None]}}
    for key, value in values.items():
        job_store.set_data(job_id, key, value)
    assert job_store.data(job_id) == values


def test_reacquiring_keeps_the_acquired_time(job_store):
    job_id = make_job(job_store)
    assert job_store.acquire_lock(job_id, "a", timeout=60)
    first = job_store.get(job_id).lock
    time.sleep(0.02)
    assert job_store.acquire_lock(job_id, "a", timeout=60)
    again = job_store.get(job_id).lock
    assert again.acquired == first.acquired
    assert again.heartbeat > first.heartbeat
    job_store.release_lock(job_id, "a")
    assert job_store.acquire_lock(job_id, "b", timeout=60)
    assert job_store.get(job_id).lock.acquired > first.acquired


def test_purge_goes_batch_by_batch_and_takes_everything(job_store):
    env = uuid.uuid4().hex[:8]
    doomed = [make_job(job_store, "Succeeded", environment=env, properties={"k": i})
              for i in range(25)]
    parent = make_job(job_store, "Succeeded", environment=env)
    kept = make_job(job_store, "Awaiting", environment=env)
    job_store.add_continuation(parent, kept, "succeeded")
    job_store.set_data(doomed[0], "x", 1)
    assert job_store.purge(["Succeeded"], before=at(1), environment=env, batch_size=10) == 26
    assert all(job_store.get(job_id) is None for job_id in doomed)
    assert job_store.states(doomed[0]) == [] and job_store.properties(doomed[0]) == {}
    assert job_store.data(doomed[0]) == {}
    assert job_store.count(JobQuery(environment=env)) == 1
    assert job_store.parents(kept) == []


def test_concurrent_search_and_lock_never_hands_out_a_job_twice(job_store):
    env = uuid.uuid4().hex[:8]
    jobs = {make_job(job_store, environment=env, created=at(i)) for i in range(24)}
    query = JobQuery(Q(state="Enqueued"), environment=env, order_by=("created",), limit=3)
    taken: list[tuple[str, str]] = []
    start = threading.Barrier(4)

    def worker(name):
        start.wait()
        while True:
            got = job_store.search_and_lock(query, name, timeout=60)
            if not got:
                return
            for job in got:  # a worker moves what it took on (its own locks stay "free")
                job_store.transition(job.id, StateRecord("Executing", at(99)), holder=name,
                                     expected=["Enqueued"])
                taken.append((name, job.id))

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(job_id for _, job_id in taken) == sorted(jobs)  # each job once
    assert all(job_store.get(job_id).lock.holder == name for name, job_id in taken)


def test_concurrent_event_writers_on_one_command(job_store):
    cid = uuid.uuid4().hex
    threads_n, per_thread = 6, 20
    events = [CommandEvent(cid, S.PROCESSING, at(i), command_name="shop.X", worker=f"w{i}")
              for i in range(threads_n * per_thread)]
    events.append(CommandEvent(cid, S.DISPATCHED, at(-1), command_name="shop.X",
                               command={"id": cid}, queue="q"))
    random.Random(7).shuffle(events)
    newest = max(events, key=lambda e: e.order_text)
    start = threading.Barrier(threads_n)

    def write(chunk):
        start.wait()
        for i in range(0, len(chunk), 3):
            job_store.record_events(chunk[i:i + 3], "default")

    chunks = [events[n::threads_n] for n in range(threads_n)]
    threads = [threading.Thread(target=write, args=(chunk,)) for chunk in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    history = job_store.states(cid)
    assert [s.sequence for s in history] == list(range(1, len(events) + 1))
    job = job_store.get(cid)
    assert (job.state, job.worker, job.queue, job.args) == ("Executing", newest.worker, "q",
                                                            [{"id": cid}])
    assert len(job_store.events(cid)) == len(events)
    assert job_store.events(cid)[0].worker == newest.worker


@pytest.mark.parametrize("order", ["created", "-created", "priority", "-modified", "name"])
def test_ordering_and_paging_agree(job_store, order):
    env = uuid.uuid4().hex[:8]
    for i in range(7):
        make_job(job_store, environment=env, created=at(i * 3), priority=i % 3,
                 name=f"job{(i * 5) % 7}")
    whole = found(job_store, env, None, order_by=(order, "id"), limit=100)
    pages = [found(job_store, env, None, order_by=(order, "id"), limit=3, offset=o)
             for o in (0, 3, 6)]
    assert [job_id for page in pages for job_id in page] == whole
