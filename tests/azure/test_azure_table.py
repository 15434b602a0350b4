"""azuretable:// event repository against Azurite: contract, concurrency, expiry."""
from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from celery_bgp.events import CommandEvent, EventStatus, repository_from_url
from celery_bgp.events.azure_table import AzureTableEventRepository
from celery_bgp.exceptions import ImproperlyConfigured

pytestmark = pytest.mark.integration

S = EventStatus


@pytest.fixture
def repo(azurite):
    return repository_from_url(f"azuretable://?table=ev{uuid.uuid4().hex[:10]}")


def event(command_id, status, seconds=0.0, **kw):
    when = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=seconds)
    return CommandEvent(command_id, status, when, **kw)


def test_events_come_back_newest_first(repo):
    assert isinstance(repo, AzureTableEventRepository)
    cid = "cmd/with#odd?chars%"
    repo.add_many([event(cid, S.DISPATCHED, 0, command={"a": 1}), event(cid, S.PROCESSING, 1),
                   event(cid, S.PROCESSED, 1)])
    assert [e.status for e in repo.all(cid)] == [S.PROCESSED, S.PROCESSING, S.DISPATCHED]
    assert repo.latest(cid).status is S.PROCESSED
    assert repo.all(cid)[-1].command == {"a": 1}
    assert repo.all("nothing-here") == []


def test_large_events_and_large_batches(repo):
    cid = uuid.uuid4().hex
    payload = {"blob": "z" * 100_000}
    repo.add_many([event(cid, S.DISPATCHED, 0, command=payload)]
                  + [event(cid, S.RETRYING, i + 1) for i in range(150)])
    events = repo.all(cid)
    assert len(events) == 151
    assert events[-1].command == payload


def test_concurrent_writers_never_lose_an_event(azurite):
    url = f"azuretable://?table=ev{uuid.uuid4().hex[:10]}"
    cid = uuid.uuid4().hex
    repository_from_url(url).add(event(cid, S.DISPATCHED))

    def write(n):
        own = repository_from_url(url)
        for i in range(20):
            own.add(event(cid, S.RETRYING, n * 100 + i, reason=f"{n}-{i}"))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reasons = {e.reason for e in repository_from_url(url).all(cid)}
    assert reasons == {f"{n}-{i}" for n in range(6) for i in range(20)} | {None}


def test_expiry_is_sliding_and_enforced_on_read(azurite):
    repo = repository_from_url(f"azuretable://?table=ev{uuid.uuid4().hex[:10]}&expiry=1.5")
    cid = uuid.uuid4().hex
    repo.add(event(cid, S.DISPATCHED))
    time.sleep(1.0)
    repo.add(event(cid, S.PROCESSING, 1))
    time.sleep(1.0)
    assert len(repo.all(cid)) == 2  # the second add pushed the expiry back
    time.sleep(1.0)
    assert repo.all(cid) == []
    other = uuid.uuid4().hex
    repo.add(event(other, S.DISPATCHED))
    time.sleep(1.7)
    assert repo.purge_expired() == 1


def test_bad_table_name_and_missing_connection_string(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match="table name"):
        repository_from_url("azuretable://?table=no-hyphens")
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    with pytest.raises(ImproperlyConfigured, match="AZURE_STORAGE_CONNECTION_STRING"):
        repository_from_url("azuretable://?table=events")
