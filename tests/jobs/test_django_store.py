"""What only the Django store has: transactions, processes, migrations, query plans, django-db://.

Each test runs on PostgreSQL, MariaDB and SQLite (``tests.helpers.databases``).
"""
from __future__ import annotations

import functools
import io
import multiprocessing
import random
import uuid

import pytest
from django.core.management import call_command
from django.db import connections, transaction

from celery_bgp import CommandEvent, EventStatus
from celery_bgp.contrib.django.events import DjangoDbEventRepository
from celery_bgp.contrib.django.store import DjangoJobStore
from celery_bgp.events import repository_from_url
from celery_bgp.jobs.model import StateRecord
from celery_bgp.jobs.query import JobQuery, P, Q
from celery_bgp.jobs.store import JobExists, JobStoreEvents
from tests.helpers.databases import alias_params, django_db_mark, require_database
from tests.jobs.test_store_contract import at, make_job, run_as_worker

pytestmark = pytest.mark.integration
S = EventStatus


@pytest.fixture(params=alias_params())
def alias(request):
    require_database(request.param)
    return request.param


def test_on_commit_runs_after_commit_and_never_after_rollback(alias):
    store = DjangoJobStore(alias)
    ran: list[str] = []
    with transaction.atomic(using=alias):
        job_id = make_job(store)
        store.on_commit(lambda: ran.append("committed"))
        assert ran == []  # not before the commit
    assert ran == ["committed"]

    with pytest.raises(RuntimeError), transaction.atomic(using=alias):
        phantom = make_job(store)
        store.transition(job_id, StateRecord("Deleted", at(1)))
        store.on_commit(lambda: ran.append("rolled back"))
        raise RuntimeError("the caller's transaction fails")
    assert ran == ["committed"]
    assert store.get(phantom) is None  # no phantom job
    assert store.get(job_id).state == "Enqueued"
    assert [s.name for s in store.states(job_id)] == ["Enqueued"]

    with transaction.atomic(using=alias):
        try:
            with transaction.atomic(using=alias):  # a savepoint that rolls back
                store.on_commit(lambda: ran.append("savepoint rolled back"))
                raise ValueError
        except ValueError:
            pass
        store.on_commit(lambda: ran.append("outer"))
    assert ran == ["committed", "outer"]

    store.on_commit(lambda: ran.append("no transaction: at once"))
    assert ran[-1] == "no transaction: at once"


def test_store_errors_inside_a_callers_transaction_leave_it_usable(alias):
    store = DjangoJobStore(alias)
    job_id = make_job(store)
    with transaction.atomic(using=alias):
        with pytest.raises(Exception, match="already exists"):
            make_job(store, job_id=job_id)
        store.set_data(job_id, "after", 1)  # the transaction still works
    assert store.data(job_id) == {"after": 1}


def _write_events(alias, cid, events):
    store = DjangoJobStore(alias)
    try:
        for i in range(0, len(events), 4):
            store.record_events(events[i:i + 4], "default")
    finally:
        connections.close_all()


def test_event_writers_in_many_processes_lose_nothing(alias):
    cid = uuid.uuid4().hex
    events = [CommandEvent(cid, S.PROCESSING, at(i), command_name="shop.X", worker=f"p{i}")
              for i in range(160)]
    events += [CommandEvent(cid, S.PROCESSED, at(500), command_name="shop.X", worker="last"),
               CommandEvent(cid, S.DISPATCHED, at(-5), command_name="shop.X", queue="q",
                            command={"id": cid})]
    random.Random(3).shuffle(events)
    connections.close_all()  # children must not inherit (and share) the parent's sockets
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_events, args=(alias, cid, events[n::4]))
             for n in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = DjangoJobStore(alias)
    job = store.get(cid)
    assert (job.state, job.worker, job.queue, job.created) == ("Succeeded", "last", "q", at(-5))
    history = store.states(cid)
    assert [s.sequence for s in history] == list(range(1, len(events) + 1))
    assert store.events(cid)[0].status is S.PROCESSED


def test_django_db_repository(alias):
    url = "django-db://" if alias == "default" else f"django-db://{alias}"
    repo = repository_from_url(f"{url}?environment=shop", expiry=600)
    assert isinstance(repo, DjangoDbEventRepository) and isinstance(repo, JobStoreEvents)
    assert (repo.store.using, repo.environment, repo.expiry) == (alias, "shop", None)
    cid = uuid.uuid4().hex
    repo.add(CommandEvent(cid, S.PROCESSED, at(2), command_name="shop.Order"))  # lands first
    repo.add_many([CommandEvent(cid, S.DISPATCHED, at(0), command_name="shop.Order",
                                command={"id": cid}),
                   CommandEvent(cid, S.PROCESSING, at(1), command_name="shop.Order")])
    assert repo.latest(cid).status is S.PROCESSED
    assert [e.status for e in repo.all(cid)] == [S.PROCESSED, S.PROCESSING, S.DISPATCHED]
    assert repo.all("missing") == [] and repo.latest("missing") is None
    job = repo.store.get(cid)
    assert (job.kind.value, job.environment, job.state) == ("command", "shop", "Succeeded")
    default_env = repository_from_url(url)
    assert default_env.environment == "default"


@django_db_mark("default")
def test_models_and_migrations_agree():
    out = io.StringIO()
    call_command("makemigrations", "celery_bgp", check=True, dry_run=True, stdout=out)
    assert "No changes detected" in out.getvalue()


def test_migrations_apply_and_reverse(alias):
    call_command("migrate", "celery_bgp", "zero", database=alias, verbosity=0)
    tables = connections[alias].introspection.table_names()
    assert not [t for t in tables if t.startswith("celery_bgp_")]
    call_command("migrate", "celery_bgp", database=alias, verbosity=0)
    tables = connections[alias].introspection.table_names()
    assert {"celery_bgp_job", "celery_bgp_jobstate", "celery_bgp_jobproperty",
            "celery_bgp_jobdata", "celery_bgp_joblog", "celery_bgp_continuation"} <= set(tables)
    store = DjangoJobStore(alias)
    assert store.get(make_job(store)).state == "Enqueued"


PLANS = {
    # query -> indexes its plan must be able to use
    "tenant": (P("tenant") == "acme", {"bgp_jobprop_text"}),
    "amount": (P("amount") > 190, {"bgp_jobprop_int", "bgp_jobprop_float"}),
    "past": (Q(past_state="Failed"), {"bgp_jobstate_name_job"}),
    "state": (Q(state="Failed"), {"bgp_job_state_created"}),
    "queue": (Q(queue="mail", state="Enqueued"), {"bgp_job_queue_state"}),
}


@pytest.mark.parametrize("case", sorted(PLANS))
@django_db_mark("default")
def test_postgresql_plans_can_use_the_indexes(case):
    from celery_bgp.contrib.django.queries import filtered

    require_database("default")
    store = DjangoJobStore("default")
    for i in range(200):
        make_job(store, properties={"tenant": f"t{i}", "amount": i if i % 2 else float(i)})
    where, indexes = PLANS[case]
    qs = filtered(JobQuery(where), "default").order_by("-created")[:100]
    with transaction.atomic(), connections["default"].cursor() as cursor:
        cursor.execute("ANALYZE")
        cursor.execute("SET LOCAL enable_seqscan = off")  # as with a big table
        plan = qs.explain()
    used = {name for name in indexes if name in plan}
    assert used == indexes, plan


@django_db_mark("default")
def test_postgresql_fast_path_ends_every_transaction_it_opens():
    """pgfast opens a transaction with BEGIN in autocommit mode: a failed check, a missing
    job and a write error must each roll it back (no row lock left, no idle transaction)."""
    require_database("default")
    from psycopg import pq

    from celery_bgp.contrib.django import pgfast
    from celery_bgp.jobs.store import JobNotFound, StateConflict

    store = DjangoJobStore("default")
    connection = connections["default"]
    assert pgfast.available(connection)
    job_id = make_job(store)

    def idle() -> bool:
        return connection.connection.info.transaction_status == pq.TransactionStatus.IDLE

    with pytest.raises(StateConflict):
        store.transition(job_id, StateRecord("Succeeded", at(1)), expected={"Executing"})
    assert idle()
    with pytest.raises(JobNotFound):
        store.transition("no-such-job", StateRecord("Succeeded", at(1)))
    assert idle()
    with pytest.raises(Exception, match="too long"):  # a write that fails
        store.transition(job_id, StateRecord("X" * 200, at(1)))
    assert idle()
    # Nobody holds the row: another session locks it without waiting.
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("SELECT 1 FROM celery_bgp_job WHERE id = %s FOR UPDATE NOWAIT",
                           [job_id])
            assert cursor.fetchone() == (1,)
            cursor.execute("ROLLBACK")
    finally:
        other.close()
    store.transition(job_id, StateRecord("Succeeded", at(2)), expected={"Enqueued"})
    assert idle()
    assert [s.name for s in store.states(job_id)] == ["Enqueued", "Succeeded"]


@django_db_mark("default")
def test_a_worker_session_runs_the_engine_on_a_kept_connection_not_djangos():
    """Celery's Django fixup closes Django's connections after every task: inside
    ``session()`` (one job's run on a worker) the fast path uses a connection of its own,
    kept for the next job; inside the caller's ``atomic()`` it is Django's, as before."""
    require_database("default")
    from celery_bgp.contrib.django import kept

    store = DjangoJobStore("default")
    django = connections["default"]
    job_id = make_job(store)
    try:
        django.close()
        with store.session():
            assert store.get(job_id).state == "Enqueued"
            store.transition(job_id, StateRecord("Executing", at(1)), expected={"Enqueued"})
            own = kept.connection("default")
            pid = own.connection.info.backend_pid
            assert django.connection is None  # Django's was never opened
        django.close()  # what the fixup does after the task
        with store.session():
            store.transition(job_id, StateRecord("Succeeded", at(2)), expected={"Executing"})
            assert kept.connection("default").connection.info.backend_pid == pid  # kept
            with transaction.atomic():  # the caller's transaction: Django's connection
                other = make_job(store)
                assert django.in_atomic_block
            assert store.get(other).state == "Enqueued"
        assert [s.name for s in store.states(job_id)] == ["Enqueued", "Executing", "Succeeded"]
        store.on_idle()  # after a store error: the kept connection is dropped too
        assert kept.connection("default").connection is None
    finally:
        kept.close_all()


@django_db_mark("default")
def test_an_alias_with_djangos_pool_keeps_no_connection_of_its_own(monkeypatch):
    """Celery's fixup closes Django's pool after each task of a prefork child: a kept
    connection from it would be closed under the engine, so Django's is used."""
    require_database("default")
    store = DjangoJobStore("default")
    django = connections["default"]
    django.ensure_connection()  # open before the option is set: no pool is really made
    options = {**django.settings_dict.get("OPTIONS", {}), "pool": True}
    monkeypatch.setitem(django.settings_dict, "OPTIONS", options)
    with store.session():
        assert store._fast() is django


@django_db_mark("default")
def test_an_alias_with_server_side_binding_keeps_the_one_statement_path(monkeypatch):
    """``OPTIONS["server_side_binding"]`` makes Django's cursors bind on the server, which
    refuses the store's multi-statement strings: the store binds its own on the client,
    on the same connection, so a job still costs one round trip to create and three on
    its worker (the ORM path took 9-10 ms of a worker's time per job, against 2 ms), seen
    by Django's execute wrappers, its times read as Django reads them."""
    import psycopg

    from celery_bgp.contrib.django import kept
    from tests.jobs.test_row_versions import statements

    require_database("default")
    django = connections["default"]
    options = {**django.settings_dict.get("OPTIONS", {}), "server_side_binding": True}
    monkeypatch.setitem(django.settings_dict, "OPTIONS", options)
    django.close()  # connect again with the option's cursors
    store = DjangoJobStore("default")
    wrapped: list[str] = []

    def wrapper(execute, sql, params, many, context):
        wrapped.append(sql)
        return execute(sql, params, many, context)

    try:
        with django.cursor() as cursor:
            assert not isinstance(cursor.cursor, psycopg.ClientCursor)  # the option holds
        with django.execute_wrapper(wrapper), statements() as sent:
            job_id = make_job(store, properties={"tenant": "acme"})
        assert len(sent) == len(wrapped) == 1
        with store.session():
            store.get("warm-up")  # the kept connection connects (and sets its time zone)
            with statements() as sent:
                assert store.get(job_id).state == "Enqueued"
                store.transition(job_id, StateRecord("Executing", at(1)),
                                 expected={"Enqueued"}, holder="w/1", take_lock=60,
                                 durable=False)
                store.transition(job_id, StateRecord("Succeeded", at(2)),
                                 expected={"Executing"}, holder="w/1", release_lock=True,
                                 durable=False)
            own = kept.connection("default")
        assert len(sent) == 3, sent
        assert own is not django and own.settings_dict["OPTIONS"]["server_side_binding"]
        job = store.get(job_id)
        assert (job.state, job.created, job.modified, job.lock) == \
            ("Succeeded", at(0), at(2), None)
        assert job.modified.utcoffset().total_seconds() == 0
        assert [(s.name, s.elected) for s in store.states(job_id)] == \
            [("Enqueued", at(0)), ("Executing", at(1)), ("Succeeded", at(2))]
        assert store.properties(job_id) == {"tenant": "acme"}
    finally:
        kept.close_all()
        django.close()


@django_db_mark("default")
def test_an_alias_that_prepares_statements_prepares_the_workers_and_survives_a_failure(
        monkeypatch):
    """docs/jobs.rst, "Prepared statements": with Django's ``OPTIONS["prepare_threshold"]``
    the worker's statements and the new job's insert are prepared (PostgreSQL lists
    them), a job still costs three round trips there, a duplicate id is still
    ``JobExists``, and a write that fails while psycopg is
    preparing a statement leaves the connection usable (psycopg 3.3 would otherwise hold
    a statement as prepared whose Parse the failure skipped)."""
    from celery_bgp.contrib.django import kept
    from tests.jobs.test_row_versions import statements

    require_database("default")
    django = connections["default"]
    options = {**django.settings_dict.get("OPTIONS", {}), "prepare_threshold": 1}
    monkeypatch.setitem(django.settings_dict, "OPTIONS", options)
    django.close()
    store = DjangoJobStore("default")

    run = functools.partial(run_as_worker, store)

    try:
        with store.session():
            run(make_job(store))  # each statement run once: prepared from the second
            job_id = make_job(store)
            with statements() as sent:
                run(job_id)
            assert len(sent) == 3, sent
            with kept.connection("default").cursor() as cursor:
                cursor.execute("SELECT statement FROM pg_prepared_statements")
                prepared = [row[0] for row in cursor.fetchall()]
            assert any(q.startswith('SELECT "id"') for q in prepared), prepared
            assert any("celery_bgp_continuation" in q for q in prepared), prepared
            assert sum(q.startswith("WITH moved") or q.startswith("WITH fast")
                       for q in prepared) >= 2, prepared
            # a new job: one INSERT, the job row and its first state as its CTEs
            assert any(q.startswith('WITH w0 AS (INSERT INTO "celery_bgp_job"')
                       for q in prepared), prepared
            with pytest.raises(JobExists):
                make_job(store, job_id=job_id)
            assert store.get(job_id).state == "Succeeded"
        with transaction.atomic():  # Django's connection, a savepoint of the caller's
            inside = [make_job(store) for _ in range(3)]  # prepared from the second
            with pytest.raises(JobExists):
                make_job(store, job_id=inside[0])
            inside.append(make_job(store))  # the caller's transaction goes on
        assert [store.get(i).state for i in inside] == ["Enqueued"] * 4
        with store.session():
            kept.discard("default")  # a new connection: nothing prepared yet
            run(make_job(store))  # each statement run once
            failing = make_job(store)
            with pytest.raises(Exception):  # noqa: B017 - the column refuses the value
                # the continuations read's second run: psycopg prepares it in this pipeline
                run(failing, changes={"attempt": "x" * 9})
            assert store.transition(failing, StateRecord("Succeeded", at(3)),
                                    expected={"Executing"}, holder="w/1",
                                    release_lock=True).applied.sequence == 3
            run(make_job(store))
    finally:
        kept.close_all()
        django.close()


@django_db_mark("default")
def test_a_job_created_in_the_callers_transaction_is_one_insert_in_a_savepoint():
    """docs/jobs.rst, "The Django store's writes": inside your ``transaction.atomic()``
    a new job is one insert string in a savepoint of your transaction: it commits or
    rolls back with it, and a duplicate id raises ``JobExists`` and leaves your
    transaction usable."""
    from tests.jobs.test_row_versions import statements

    require_database("default")
    store = DjangoJobStore("default")
    with transaction.atomic():
        with statements() as sent:
            job_id = make_job(store, properties={"tenant": "acme"})
        assert [q.split()[0] for q in sent] == ["SAVEPOINT", "INSERT", "RELEASE"], sent
        with pytest.raises(JobExists):
            make_job(store, job_id=job_id)
        other = make_job(store)  # the caller's transaction goes on
    assert store.get(job_id).state == "Enqueued"
    assert store.properties(job_id) == {"tenant": "acme"}
    assert [s.name for s in store.states(other)] == ["Enqueued"]
    with pytest.raises(RuntimeError), transaction.atomic():
        phantom = make_job(store)
        raise RuntimeError("the caller's transaction fails")
    assert store.get(phantom) is None
