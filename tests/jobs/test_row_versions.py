"""A transition of a row the store has just read or written costs one round trip, and a
version that is no longer the row's never changes an outcome (celery_bgp.jobs.pgwire).

The SQL stores on PostgreSQL remember the version of each job row they read or write
(per thread); the next transition of that row writes only if the row is still that
version, else it locks the row and decides on what is committed. The promise the
docstring makes is checked two ways: counted statements for the worker's path, and a
stateful property test in which two store instances (two memories of versions) move
the same jobs behind each other's back, step by step against the memory store.
"""
from __future__ import annotations

import contextlib
import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from celery_bgp.jobs import pgwire
from celery_bgp.jobs.memory import MemoryJobStore
from celery_bgp.jobs.model import JobKind, JobRecord, StateRecord
from celery_bgp.jobs.query import JobQuery
from celery_bgp.jobs.store import JobNotFound, StateConflict

from .conftest import STORE_FACTORIES, STORE_MARKS

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
#: The SQL stores on PostgreSQL, each also with psycopg preparing its statements (off
#: unless Django's ``OPTIONS["prepare_threshold"]`` or the URL's ``?prepare_threshold=``).
PG_STORES = [pytest.param(name, marks=STORE_MARKS.get(name.split("-")[0], ()))
             for name in ("django", "django-prepared", "sqlalchemy", "sqlalchemy-prepared")]


@pytest.fixture(params=PG_STORES)
def store_factory(request, monkeypatch):
    """Makes stores of one kind on one PostgreSQL database (each its own memory)."""
    kind, _, variant = request.param.partition("-")
    made = []
    if variant == "prepared" and kind == "django":  # the option, on the store's alias
        from django.db import connections

        django = connections["default"]
        options = {**django.settings_dict.get("OPTIONS", {}), "prepare_threshold": 0}
        monkeypatch.setitem(django.settings_dict, "OPTIONS", options)
        django.close()  # connects again with the option

    def make():
        if variant == "prepared" and kind == "sqlalchemy":
            from celery_bgp.contrib.sqlalchemy import SQLAlchemyJobStore

            url = request.getfixturevalue("sa_databases").url("postgresql")
            made.append(SQLAlchemyJobStore(f"db+{url}?prepare_threshold=0"))
        else:
            made.append(STORE_FACTORIES[kind](request))
        return made[-1]

    yield make
    for store in made:
        store.close()
    if kind == "django":  # a worker session's kept connection
        from django.db import connections

        from celery_bgp.contrib.django import kept

        kept.close_all()
        connections["default"].close()


def new_job(store, state="Enqueued", job_id=None, environment="default") -> str:
    job_id = job_id or uuid.uuid4().hex
    store.create(JobRecord(id=job_id, name="app:work", kind=JobKind.CALLABLE, queue="q",
                           priority=2, environment=environment, state=state, created=T0,
                           modified=T0), StateRecord(state, T0))
    return job_id


@contextlib.contextmanager
def statements(literal: bool = False):
    """Counts the round trips sent: each statement string (autocommit, BEGIN and COMMIT
    inside the string), or the statements of one psycopg pipeline, joined by "; ";
    ``literal``: as sent, the parameters bound in."""
    sent = []
    pipelined: list[list[str]] = []
    originals = {cls: cls.execute for cls in (psycopg.Cursor, psycopg.ClientCursor)}
    original_pipeline = psycopg.Connection.pipeline

    def counting(original):
        def execute(self, query, params=None, *args, **kwargs):
            text = str(query)
            if literal and params is not None:
                text = psycopg.ClientCursor(self.connection).mogrify(query, params)
            (pipelined[-1] if pipelined else sent).append(text)
            return original(self, query, params, *args, **kwargs)
        return execute

    @contextlib.contextmanager
    def pipeline(self):
        pipelined.append([])
        try:
            with original_pipeline(self) as done:
                yield done
        finally:
            sent.append("; ".join(pipelined.pop()))

    for cls, original in originals.items():
        cls.execute = counting(original)
    psycopg.Connection.pipeline = pipeline
    try:
        yield sent
    finally:
        for cls, original in originals.items():
            cls.execute = original
        psycopg.Connection.pipeline = original_pipeline


def test_a_worker_reads_starts_and_finishes_a_job_in_three_round_trips(store_factory):
    store = store_factory()
    job_id = new_job(store)
    with store.session():
        store.get("warm-up")  # connect first
        with statements() as sent:
            store.get(job_id)
            start = store.transition(
                job_id, StateRecord("Executing", T0), expected={"Enqueued"}, holder="w/1",
                take_lock=60, changes={"execution_id": "e1", "attempt": 1}, durable=False)
            end = store.transition(
                job_id, StateRecord("Succeeded", T0), expected={"Executing"}, holder="w/1",
                release_lock=True, changes={"result": 3}, durable=False)
    assert len(sent) == 3, sent
    assert (start.previous, start.applied.sequence) == ("Enqueued", 2)
    assert (end.previous, end.applied.sequence) == ("Executing", 3)
    job = store.get(job_id)
    assert (job.state, job.result, job.lock) == ("Succeeded", 3, None)
    assert [s.name for s in store.states(job_id)] == ["Enqueued", "Executing", "Succeeded"]


def test_the_one_trip_write_finds_the_row_by_its_key_whatever_the_backlog(store_factory):
    """With thousands of Enqueued jobs waiting, making one Executing must not walk them:
    the write's plan reads the job table through its primary key only."""
    store = store_factory()
    # An environment of its own, purged at the end: the SQLAlchemy store's database is
    # the session's, and 2,000 Enqueued jobs would change other tests' "oldest first".
    backlog = f"backlog-{uuid.uuid4().hex[:8]}"
    try:
        ids = [new_job(store, environment=backlog) for _ in range(2000)]
        store.get(ids[1000])
        with statements(literal=True) as sent:
            store.transition(ids[1000], StateRecord("Executing", T0), expected={"Enqueued"},
                             holder="w/1", take_lock=60, durable=False)
        [write] = [q for q in sent if "moved AS" in q]
        write = write[write.index("WITH "):]  # after SET LOCAL, if sent with it
        with psycopg.connect(_dsn(store), autocommit=True) as c:
            c.execute("BEGIN")
            plan = "\n".join(row[0] for row in c.execute("EXPLAIN " + write))
            c.execute("ROLLBACK")
    finally:
        store.purge({"Enqueued", "Executing"}, T0 + timedelta(days=1), environment=backlog)
    scans = [line for line in plan.splitlines() if "Scan" in line and "celery_bgp_job " in
             line + " "]
    assert scans and all("celery_bgp_job_pkey" in line for line in scans), plan
    assert store.search(JobQuery(environment=backlog, limit=1)) == []


def _dsn(store) -> str:
    """A libpq connection string to the store's database."""
    if hasattr(store, "engine"):
        url = store.engine.url
        return (f"host={url.host} port={url.port or 5432} user={url.username} "
                f"dbname={url.database}" + (f" password={url.password}" if url.password
                                            else ""))
    from django.db import connections

    settings = connections[store.using].settings_dict
    return (f"host={settings['HOST']} port={settings['PORT'] or 5432} "
            f"user={settings['USER']} dbname={settings['NAME']}"
            + (f" password={settings['PASSWORD']}" if settings.get("PASSWORD") else ""))


def test_a_job_moved_since_it_was_read_is_decided_on_its_committed_row(store_factory):
    """Read by one store, cancelled through another: the first one's Executing write
    finds the row changed and fails as a conflict, writing nothing."""
    worker, web = store_factory(), store_factory()
    job_id = new_job(worker)
    worker.get(job_id)
    web.transition(job_id, StateRecord("Deleted", T0), expected={"Enqueued"})
    with statements() as sent, pytest.raises(StateConflict, match="Deleted"):
        worker.transition(job_id, StateRecord("Executing", T0), expected={"Enqueued"},
                          holder="w/1", take_lock=60)
    assert len(sent) == 3  # the one-trip write matched no row; then lock, roll back
    assert [s.name for s in worker.states(job_id)] == ["Enqueued", "Deleted"]


def test_a_lock_taken_since_the_read_is_respected(store_factory):
    """A lock taken by someone else does not change the state's sequence: the version
    covers the lock holder too."""
    worker, other = store_factory(), store_factory()
    job_id = new_job(worker)
    worker.get(job_id)
    assert other.acquire_lock(job_id, "other", 60)
    with pytest.raises(StateConflict, match="locked by other"):
        worker.transition(job_id, StateRecord("Executing", T0), holder="w/1", take_lock=60)
    assert worker.get(job_id).lock.holder == "other"


def test_a_version_that_fails_the_checks_is_not_trusted(store_factory):
    """The remembered version says Enqueued; the row was moved on and back meanwhile. The
    transition is decided on the row, not on what was remembered."""
    worker, other = store_factory(), store_factory()
    job_id = new_job(worker, state="Scheduled")
    worker.get(job_id)  # remembers Scheduled
    other.transition(job_id, StateRecord("Enqueued", T0))
    change = worker.transition(job_id, StateRecord("Executing", T0), expected={"Enqueued"})
    assert (change.previous, change.applied.sequence) == ("Enqueued", 3)


def test_a_failed_one_trip_write_leaves_the_connection_usable(store_factory):
    store = store_factory()
    job_id = new_job(store)
    store.get(job_id)
    with pytest.raises(Exception):  # noqa: B017 - the column's type refuses the value
        store.transition(job_id, StateRecord("Executing", T0), changes={"attempt": "x" * 9})
    assert store.get(job_id).state == "Enqueued"
    store.transition(job_id, StateRecord("Executing", T0), changes={"attempt": 1})
    assert store.get(job_id).attempt == 1


# -- two memories of versions, against the memory store --------------------------------

STATES = ["Enqueued", "Executing", "Succeeded", "Failed", "Deleted", "Scheduled"]
HOLDERS = [None, "a", "b"]


class VersionsMachine(RuleBasedStateMachine):
    """Two SQL store instances (``0``, ``1``) and the memory store take the same steps;
    each step's outcome and the job's row must be the same in both."""

    factory = None  # set by the test: () -> a new SQL store on the same database

    def __init__(self) -> None:
        super().__init__()
        self.sql = [self.factory(), self.factory()]
        self.memory = MemoryJobStore()
        self.ids: list[str] = []
        self.tick = 0

    def _at(self) -> datetime:
        self.tick += 1
        return T0 + timedelta(seconds=self.tick)

    @initialize()
    def create(self):
        for _ in range(2):
            job_id = new_job(self.sql[0])
            new_job(self.memory, job_id=job_id)
            self.ids.append(job_id)

    @rule(client=st.integers(0, 1), pick=st.integers(0, 1))
    def read(self, client, pick):
        job_id = self.ids[pick]
        assert _row(self.sql[client].get(job_id)) == _row(self.memory.get(job_id))

    @rule(client=st.integers(0, 1), pick=st.integers(0, 1), state=st.sampled_from(STATES),
          expected=st.none() | st.sets(st.sampled_from(STATES), min_size=1, max_size=3),
          holder=st.sampled_from(HOLDERS), lock=st.sampled_from(["none", "take", "release"]),
          continuations=st.booleans(), durable=st.booleans())
    def transition(self, client, pick, state, expected, holder, lock, continuations, durable):
        job_id = self.ids[pick]
        record = StateRecord(state, self._at())
        options = {"expected": expected, "holder": holder, "continuations": continuations,
                   "durable": durable, "changes": {"attempt": self.tick}}
        if holder is not None and lock == "take":
            options["take_lock"] = 60
        elif holder is not None and lock == "release":
            options["release_lock"] = True
        got = _outcome(lambda: self.sql[client].transition(job_id, record, **options))
        want = _outcome(lambda: self.memory.transition(job_id, record, **options))
        assert got == want

    @rule(client=st.integers(0, 1), pick=st.integers(0, 1), holder=st.sampled_from(["a", "b"]),
          action=st.sampled_from(["acquire", "release", "expire"]))
    def lock(self, client, pick, holder, action):
        job_id = self.ids[pick]
        for store in (self.sql[client], self.memory):
            if action == "release":
                store.release_lock(job_id, holder)
            else:  # "expire": a lock that has expired by the next step
                store.acquire_lock(job_id, holder, 60 if action == "acquire" else 1e-6)

    @invariant()
    def same_rows(self):
        for job_id in self.ids:
            observer = self.sql[0]
            assert _row(observer.get(job_id)) == _row(self.memory.get(job_id))
            assert [(s.name, s.sequence) for s in observer.states(job_id)] == \
                [(s.name, s.sequence) for s in self.memory.states(job_id)]

    def teardown(self):
        for store in self.sql:
            store.close()


def _row(job):
    return (job.state, job.attempt, job.lock.holder if job.lock else None) if job else None


def _outcome(call):
    try:
        change = call()
    except (StateConflict, JobNotFound) as exc:
        return type(exc).__name__
    return (change.previous, change.applied.name, change.applied.sequence)


def test_remembered_versions_never_change_an_outcome(store_factory, monkeypatch):
    """Whatever two clients did behind each other's back, each transition ends as the
    memory store's does (the reference: it has no versions to trust)."""
    tried = {True: 0, False: 0}  # one-trip writes that wrote / that matched no row
    one_trip = pgwire.write_if_unchanged

    def counted(*args, **kwargs):
        done = one_trip(*args, **kwargs)
        tried[done is not None] += 1
        return done

    monkeypatch.setattr(pgwire, "write_if_unchanged", counted)
    VersionsMachine.factory = staticmethod(store_factory)
    run_state_machine_as_test(VersionsMachine, settings=settings(
        max_examples=50, stateful_step_count=30, deadline=None,
        suppress_health_check=list(HealthCheck)))
    print(tried)
    assert tried[True] > 20 and tried[False] > 20, tried  # both paths were taken
