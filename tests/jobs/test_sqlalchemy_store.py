"""What only the SQLAlchemy store has: ``db+`` URLs and Engines as settings, the caller's
transactions (Connection or Session), and its migrations from the CLI.

The store contract itself runs in ``test_store_contract.py`` / ``test_store_edges.py``
(params ``sqlalchemy``, ``sqlalchemy-mariadb``, ``sqlalchemy-sqlite``).
"""
from __future__ import annotations

import functools
import uuid

import pytest
from celery import Celery
from sqlalchemy import select
from sqlalchemy.orm import Session

from celery_bgp import BackgroundProcessing
from celery_bgp.contrib.sqlalchemy import SQLAlchemyJobStore, engine_from_url
from celery_bgp.contrib.sqlalchemy.schema import job as job_table
from celery_bgp.exceptions import ImproperlyConfigured
from celery_bgp.jobs.model import StateRecord
from celery_bgp.jobs.store import StateConflict
from celery_bgp.jobs.stores import check_job_store, resolve_job_store
from tests.apps import jobs as J
from tests.helpers.sqlalchemy_databases import SA_DATABASES
from tests.jobs.test_store_contract import at, make_job, run_as_worker

pytestmark = pytest.mark.integration
KINDS = sorted(set(SA_DATABASES.values()))


@pytest.fixture(params=KINDS)
def url(request, sa_databases):
    return sa_databases.url(request.param)


def make_bgp(store) -> tuple[BackgroundProcessing, list[str]]:
    """A publisher whose broker is a list: what was sent, in order."""
    app = Celery(f"sa-tx-{uuid.uuid4().hex[:6]}", set_as_current=False)
    app.conf.update(broker_url="memory://")
    bgp = BackgroundProcessing(app, name=f"env-{uuid.uuid4().hex[:6]}", job_store=store,
                               job_modules=["tests.apps"], event_write="sync")
    sent: list[str] = []
    bgp.jobs._publish = lambda job, when: sent.append(job.id)
    return bgp, sent


def visible(engine, job_id: str) -> bool:
    """Whether another connection sees the job (committed)."""
    with engine.connect() as other:
        return other.execute(select(job_table.c.id).where(job_table.c.id == job_id)
                             ).first() is not None


def test_settings_take_db_urls_and_engines(url):
    check_job_store(f"db+{url}")
    engine = engine_from_url(f"db+{url}")
    assert engine_from_url(url) is engine  # one engine per database and process
    assert resolve_job_store(f"db+{url}") == SQLAlchemyJobStore(engine)
    assert isinstance(resolve_job_store(engine), SQLAlchemyJobStore)
    with pytest.raises(ImproperlyConfigured, match="db\\+<SQLAlchemy URL>"):
        check_job_store("nosuch://x")
    bgp, _ = make_bgp(engine)
    assert bgp.jobs.store.engine is engine


def test_default_drivers():
    assert engine_from_url("db+postgresql://u@127.0.0.1:1/x").dialect.driver == "psycopg"
    assert engine_from_url("db+mysql://u@127.0.0.1:1/x").dialect.driver == "pymysql"
    assert engine_from_url("db+mariadb://u@127.0.0.1:1/x").dialect.name == "mariadb"


def test_messages_wait_for_the_callers_commit(url):
    engine = engine_from_url(url)
    bgp, sent = make_bgp(SQLAlchemyJobStore(engine))
    seen_at_send: list[bool] = []
    publish = bgp.jobs._publish
    bgp.jobs._publish = lambda job, when: (seen_at_send.append(visible(engine, job.id)),
                                           publish(job, when))
    with engine.connect() as connection, connection.begin():
        with bgp.jobs.transaction(connection):
            job_id = bgp.jobs.enqueue(J.add, 1, 2)
            assert bgp.jobs.get(job_id).state == "Enqueued"  # read in the transaction
        assert sent == [] and not visible(engine, job_id)  # not before the commit
    assert sent == [job_id] and seen_at_send == [True]  # committed, then sent

    with pytest.raises(RuntimeError), engine.connect() as connection, connection.begin():
        with bgp.jobs.transaction(connection):
            phantom = bgp.jobs.enqueue(J.add, 1, 2)
        raise RuntimeError("the caller's transaction fails")
    assert sent == [job_id]  # never sent
    assert bgp.jobs.get(phantom) is None


def test_a_session_transaction_too(url):
    engine = engine_from_url(url)
    bgp, sent = make_bgp(SQLAlchemyJobStore(engine))
    with Session(engine) as session, session.begin():
        with bgp.jobs.transaction(session):
            job_id = bgp.jobs.enqueue(J.add, 1, 2)
        assert sent == []
    assert sent == [job_id] and visible(engine, job_id)

    with Session(engine) as session:
        with bgp.jobs.transaction(session):
            rolled_back = bgp.jobs.enqueue(J.add, 1, 2)
        session.rollback()
    assert sent == [job_id] and bgp.jobs.get(rolled_back) is None


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_a_refused_write_leaves_the_callers_transaction_usable(kind, sa_databases):
    engine = engine_from_url(sa_databases.url(kind))
    store = SQLAlchemyJobStore(engine)
    with engine.connect() as connection, connection.begin(), store.transaction(connection):
        job_id = make_job(store)
        with pytest.raises(StateConflict):
            store.transition(job_id, StateRecord("Executing", at(1)), expected=["Idle"])
        store.transition(job_id, StateRecord("Executing", at(2)), expected=["Enqueued"])
    assert [s.name for s in store.states(job_id)] == ["Enqueued", "Executing"]


def test_the_other_stores_say_they_do_not_join(tmp_path):
    bgp, _ = make_bgp("memory://")
    with pytest.raises(ImproperlyConfigured, match="does not join"):
        bgp.jobs.transaction(object())


def test_the_cli_migrates_then_lists_and_counts(tmp_path):
    """``celery -A proj bgp db upgrade`` on a new SQLite file, then ``jobs`` and ``stats``."""
    import json
    import os
    import subprocess
    import sys

    from celery_bgp.contrib.sqlalchemy.migrate import head
    from tests.helpers.workers import ROOT

    store_url = f"db+sqlite:///{tmp_path / 'jobs.db'}"
    env = {**os.environ, "BGP_TEST_BROKER": "memory://", "BGP_TEST_JOB_STORE": store_url,
           "DJANGO_SETTINGS_MODULE": ""}

    def celery(*args: str) -> dict:
        done = subprocess.run([sys.executable, "-m", "celery", "-A",
                               "tests.apps.sa_jobs_worker_app", "bgp", *args, "--json"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout)

    migrated = celery("db", "upgrade")
    assert (migrated["from"], migrated["to"]) == (None, head())
    assert celery("db", "upgrade")["from"] == head()  # again: nothing to do
    bgp, _ = make_bgp(store_url)
    job_id = bgp.jobs.submit(J.add, args=[1, 2], idle=True)
    bgp.jobs.store.transition(job_id, StateRecord("Enqueued", at(1)))
    assert [j["id"] for j in celery("jobs", "--all-environments")["jobs"]] == [job_id]
    assert celery("stats", "--all-environments")["states"] == {"Enqueued": 1}


def test_a_db_url_prepares_nothing_unless_it_says_prepare_threshold(sa_databases):
    """docs/jobs.rst, "Prepared statements": as Django, an Engine the store makes from a
    ``db+postgresql://`` URL prepares nothing (a pooler in transaction mode loses
    prepared statements); ``?prepare_threshold=N`` lets psycopg prepare, the store's hot
    path included; a value that is not a number of runs is refused by name."""
    url = sa_databases.url("postgresql")
    for query, threshold in (("", None), ("?prepare_threshold=3", 3),
                             ("?prepare_threshold=none", None)):
        with engine_from_url(f"db+{url}{query}").connect() as connection:
            assert connection.connection.driver_connection.prepare_threshold == threshold
    with pytest.raises(ValueError, match="prepare_threshold='often'"):
        engine_from_url(f"db+{url}?prepare_threshold=often")


def test_with_prepare_threshold_the_hot_path_is_prepared_and_survives_a_failure(
        sa_databases):
    """docs/jobs.rst, "Prepared statements", on the SQLAlchemy store: a new job and the
    worker's statements are prepared (PostgreSQL lists them), a job still costs one
    round trip to create and three on its worker, and a write that fails while psycopg
    is preparing a statement leaves the connection usable."""
    from tests.jobs.test_row_versions import statements

    engine = engine_from_url(f"db+{sa_databases.url('postgresql')}?prepare_threshold=1")
    engine.dispose()  # a pool of its own for this test: one connection, reused
    store = SQLAlchemyJobStore(engine)

    run = functools.partial(run_as_worker, store)

    run(make_job(store))  # each statement run once: prepared from the second
    with statements() as sent:
        job_id = make_job(store)
        run(job_id)
    assert len(sent) == 4, sent
    with engine.connect() as connection:
        prepared = [row[0] for row in connection.exec_driver_sql(
            "SELECT statement FROM pg_prepared_statements")]
        connection.rollback()
    assert any(q.startswith('WITH w0 AS (INSERT INTO "celery_bgp_job"') for q in prepared)
    assert any("celery_bgp_continuation" in q for q in prepared), prepared
    engine.dispose()  # a new connection: nothing prepared yet
    run(make_job(store))
    failing = make_job(store)
    with pytest.raises(Exception):  # noqa: B017 - the column refuses the value
        run(failing, changes={"attempt": "x" * 9})  # its 2nd run: prepared in this pipeline
    assert store.transition(failing, StateRecord("Succeeded", at(3)), expected={"Executing"},
                            holder="w/1", release_lock=True).applied.sequence == 3
    run(make_job(store))
    assert store.get(failing).state == "Succeeded"
