"""Event repositories on real backends: contract, expiry, and concurrent writers."""
from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from django.core.management import call_command
from django.db import connections

from celery_bgp import CommandEvent, ErrorInfo, EventStatus
from celery_bgp.events import repository_from_url
from celery_bgp.events.django_cache import DjangoCacheEventRepository
from tests.conftest import EVENTS_DB

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

S = EventStatus
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
THREADS, PER_THREAD = 8, 50
PROCESSES, PER_PROCESS = 4, 50


def ev(command_id, status, seconds, worker="w"):
    return CommandEvent(command_id, status, T0 + timedelta(seconds=seconds), worker=worker,
                        command_name="tests.X")


@pytest.fixture
def redis_repo_url(redis_base):
    return f"{redis_base}/{EVENTS_DB}?prefix=test-{uuid.uuid4().hex[:6]}"


@pytest.fixture(params=["redis", "django-cache-locmem", "django-cache-redis", "django-cache-db"])
def repo_url(request, redis_base):
    if request.param == "redis":
        return f"{redis_base}/{EVENTS_DB}?prefix=t-{uuid.uuid4().hex[:6]}"
    alias = request.param.rsplit("-", 1)[1]
    alias = "default" if alias == "locmem" else alias
    if alias == "db":
        call_command("createcachetable", database="default", verbosity=0)
    return f"django-cache://{alias}?prefix=t-{uuid.uuid4().hex[:6]}"


def test_contract_and_race_order(repo_url):
    repo = repository_from_url(repo_url)
    cid = uuid.uuid4().hex
    repo.add(ev(cid, S.PROCESSED, 2))  # the worker's write lands before the publisher's
    repo.add_many([ev(cid, S.DISPATCHED, 0), ev(cid, S.PROCESSING, 1)])
    assert repo.latest(cid).status is S.PROCESSED
    assert [e.status for e in repo.all(cid)] == [S.PROCESSED, S.PROCESSING, S.DISPATCHED]
    assert repo.all("missing") == []
    assert repo.latest("missing") is None


def test_many_threads_one_command_lose_nothing(repo_url):
    repo = repository_from_url(repo_url)
    cid = uuid.uuid4().hex
    start = threading.Barrier(THREADS)

    def write(n):
        start.wait()
        try:
            for i in range(PER_THREAD):
                repo.add(ev(cid, S.PROCESSING, i, worker=f"t{n}"))
        finally:
            connections.close_all()  # this thread's own DB connection

    threads = [threading.Thread(target=write, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = repo.all(cid)
    assert len(events) == THREADS * PER_THREAD
    assert {e.worker for e in events} == {f"t{n}" for n in range(THREADS)}


def _write_from_process(url, cid, n, barrier):
    repo = repository_from_url(url)
    barrier.wait()
    for i in range(PER_PROCESS):
        repo.add(ev(cid, S.PROCESSING, i, worker=f"p{n}"))


@pytest.mark.parametrize("alias", ["redis", "django-cache-db"])
def test_many_processes_one_command_lose_nothing(alias, redis_base):
    if alias == "redis":
        url = f"{redis_base}/{EVENTS_DB}?prefix=mp-{uuid.uuid4().hex[:6]}"
    else:
        call_command("createcachetable", verbosity=0)
        url = f"django-cache://db?prefix=mp-{uuid.uuid4().hex[:6]}"
    cid = uuid.uuid4().hex
    connections.close_all()  # forked children must not inherit (and share) a DB socket
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(PROCESSES)
    procs = [ctx.Process(target=_write_from_process, args=(url, cid, n, barrier))
             for n in range(PROCESSES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len(repository_from_url(url).all(cid)) == PROCESSES * PER_PROCESS


def test_redis_expiry_is_sliding(redis_base):
    url = f"{redis_base}/{EVENTS_DB}?prefix=exp-{uuid.uuid4().hex[:6]}&expiry=1.5"
    repo = repository_from_url(url)
    cid = uuid.uuid4().hex
    repo.add(ev(cid, S.DISPATCHED, 0))
    time.sleep(1.0)
    repo.add(ev(cid, S.PROCESSING, 1))
    time.sleep(1.0)
    assert len(repo.all(cid)) == 2  # the second add pushed the expiry back
    time.sleep(1.0)
    assert repo.all(cid) == []


def test_redis_batch_is_one_round_trip(redis_base):
    url = f"{redis_base}/{EVENTS_DB}?prefix=rt-{uuid.uuid4().hex[:6]}"
    repo = repository_from_url(url)
    calls = []
    script = repo._append

    def counted(keys, args):
        calls.append(len(keys))
        return script(keys=keys, args=args)

    repo._append = counted
    repo.add_many([ev(f"c{i % 10}", S.PROCESSING, i) for i in range(100)])
    assert calls == [10]  # one script call for ten commands' hundred events
    assert all(len(repo.all(f"c{i}")) == 10 for i in range(10))


def test_redis_keeps_line_breaks_inside_events(redis_base):
    """A batch travels as newline-joined JSON texts: breaks inside values survive."""
    repo = repository_from_url(f"{redis_base}/{EVENTS_DB}?prefix=nl-{uuid.uuid4().hex[:6]}")
    cid = uuid.uuid4().hex
    text = "line one\nline two\r\n\u2028end\u2029 \\n"
    error = ErrorInfo(type="ValueError", message=text, traceback="Traceback\n  File x\n")
    repo.add_many([
        CommandEvent(cid, S.DISPATCHED, T0, command={"id": cid, "text": text, "\n": [text]}),
        CommandEvent(cid, S.ERROR, T0 + timedelta(seconds=1), error=error, reason=text),
        ev(cid, S.RETRYING, 2),
    ])
    events = repo.all(cid)
    assert [e.status for e in events] == [S.RETRYING, S.ERROR, S.DISPATCHED]
    assert events[2].command == {"id": cid, "text": text, "\n": [text]}
    assert events[1].error == error and events[1].reason == text


def test_django_cache_events_expire_after_their_write_and_gaps_are_skipped():
    repo = DjangoCacheEventRepository("default", expiry=1.5, prefix=f"exp-{uuid.uuid4().hex}")
    cid = uuid.uuid4().hex
    repo.add(ev(cid, S.DISPATCHED, 0))
    time.sleep(1.0)
    repo.add(ev(cid, S.PROCESSING, 1))
    time.sleep(0.8)
    assert [e.status for e in repo.all(cid)] == [S.PROCESSING]  # slot 0 gone, slot 1 read
    time.sleep(1.0)
    assert repo.all(cid) == []


def test_django_cache_reads_past_one_chunk():
    repo = DjangoCacheEventRepository("redis", prefix=f"big-{uuid.uuid4().hex}")
    cid = uuid.uuid4().hex
    repo.add_many([ev(cid, S.RETRYING, i) for i in range(40)])
    assert len(repo.all(cid)) == 40
