"""The job store contract, recurring jobs: the pause flag and the last run, on every store.

Run on the memory, Django (PostgreSQL, SQLite, MariaDB) and SQLAlchemy stores through the
contract's ``job_store`` fixture (``tests/jobs/conftest.py``).
"""
from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone

from celery_bgp.jobs.recurring import RecurringRecord

T0 = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)


def _env() -> str:
    return f"env-{uuid.uuid4().hex[:12]}"  # the Django stores' rows outlive a test


def test_a_pause_is_stored_with_who_and_when_and_undone_by_resume(job_store):
    env = _env()
    assert job_store.recurring_records(env) == {}
    paused = job_store.set_recurring_paused(env, "clean-carts", True, by="alice", at=T0)
    assert paused == RecurringRecord("clean-carts", env, paused=True, paused_by="alice",
                                     paused_at=T0)
    assert job_store.recurring_records(env) == {"clean-carts": paused}
    later = T0 + timedelta(minutes=5)
    resumed = job_store.set_recurring_paused(env, "clean-carts", False, by="bob", at=later)
    assert (resumed.paused, resumed.paused_by, resumed.paused_at) == (False, "bob", later)
    assert job_store.recurring_records(_env()) == {}  # per environment


def test_runs_are_recorded_without_touching_the_pause(job_store):
    env = _env()
    job_store.record_recurring_run(env, "report", beat=T0)
    assert job_store.recurring_records(env)["report"] == RecurringRecord(
        "report", env, last_beat=T0)
    job_store.set_recurring_paused(env, "report", True, by="alice", at=T0)
    job_store.record_recurring_run(env, "report", job_id="job-1", at=T0 + timedelta(seconds=1))
    job_store.record_recurring_run(env, "report", beat=T0 + timedelta(seconds=2))
    record = job_store.recurring_records(env)["report"]
    assert record == RecurringRecord("report", env, paused=True, paused_by="alice", paused_at=T0,
                                     last_job="job-1", last_run=T0 + timedelta(seconds=1),
                                     last_beat=T0 + timedelta(seconds=2))
    job_store.set_recurring_paused(env, "report", False, by=None, at=T0)
    assert job_store.recurring_records(env)["report"].last_job == "job-1"


def test_records_are_read_by_name_and_in_name_order(job_store):
    env = _env()
    for name in ("b", "c", "a"):
        job_store.set_recurring_paused(env, name, name == "c", by="ops", at=T0)
    assert list(job_store.recurring_records(env)) == ["a", "b", "c"]
    assert list(job_store.recurring_records(env, ["c", "zz"])) == ["c"]
    assert job_store.recurring_records(env, []) == {}


def test_concurrent_runs_and_a_pause_leave_one_consistent_row(job_store):
    env = _env()
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            job_store.record_recurring_run(env, "hot", job_id=f"job-{i}", at=T0,
                                           beat=T0 + timedelta(seconds=i))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    job_store.set_recurring_paused(env, "hot", True, by="alice", at=T0)
    for thread in threads:
        thread.join()
    assert errors == []
    records = job_store.recurring_records(env)
    assert list(records) == ["hot"]
    assert records["hot"].paused and records["hot"].last_job.startswith("job-")
