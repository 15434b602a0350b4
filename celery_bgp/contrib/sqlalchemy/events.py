"""Command events as job states in the SQLAlchemy store (:meth:`JobStore.record_events`).

The Django store's algorithm, in SQLAlchemy Core: lock the command jobs in id order,
create the missing ones, skip events already recorded (their ``life_order`` is unique
per job), and put late events in their place in the history
(:func:`celery_bgp.jobs.relational.tail_start`, :func:`~celery_bgp.jobs.store.in_life_order`),
the job's columns moved by :func:`celery_bgp.jobs.relational.apply_events`. A deadlock
victim (two writers on the same commands) is retried.
"""
from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy import exc as sa_exc

from celery_bgp.events.model import CommandEvent
from celery_bgp.events.repository import group_by_command
from celery_bgp.jobs.relational import apply_events, is_deadlock, tail_start
from celery_bgp.jobs.store import fresh_events, in_life_order

from .plumbing import Plumbing
from .records import command_values, event_state, row_view
from .schema import job, job_state

__all__ = ["CommandEvents", "columns"]

_DEADLOCK_RETRIES = 5


def columns(values: dict[str, Any]) -> dict[str, Any]:
    """Model attribute names (:mod:`celery_bgp.jobs.relational`) -> column names."""
    return {("life_order" if name == "order" else name): value for name, value in values.items()}


class CommandEvents(Plumbing):
    """:meth:`record_events` of the SQLAlchemy store."""


    def record_events(self, events: Sequence[CommandEvent], environment: str) -> None:
        grouped = group_by_command(events)
        if not grouped:
            return
        attempts = 1 if self.binding.current() is not None else _DEADLOCK_RETRIES
        for attempt in range(1, attempts + 1):
            try:
                return self._record(grouped, environment)
            except sa_exc.OperationalError as exc:
                if attempt == attempts or not is_deadlock(exc.orig):
                    raise
                time.sleep(random.uniform(0.005, 0.02) * attempt)

    def _record(self, grouped: dict[str, list[CommandEvent]], environment: str) -> None:
        ids = sorted(grouped)  # every writer locks in id order
        with self._begin() as connection:
            self._write_lock(connection)
            # Lock the jobs that exist, then create the missing ones (an INSERT that hits
            # an existing row would take a shared lock on it in MySQL: deadlocks).
            rows = self._locked_rows(connection, ids)
            missing = [cid for cid in ids if cid not in rows]
            if missing:
                self._insert_missing(connection, [command_values(grouped[cid][0], environment)
                                                  for cid in missing])
                rows.update(self._locked_rows(connection, missing))
            recorded = self._recorded_events(connection, ids)
            history: list[dict[str, Any]] = []
            for cid in ids:
                fresh = fresh_events(grouped[cid], recorded.get(cid, {}))
                if fresh:  # else every event is recorded already: a batch written again
                    history += self._place(connection, rows[cid], fresh, recorded.get(cid, {}))
            if history:
                connection.execute(insert(job_state), history)

    def _locked_rows(self, connection: Connection, ids: list[str]) -> dict[str, Any]:
        stmt = select(job).where(job.c.id.in_(ids)).order_by(job.c.id)
        if not self.sqlite:
            stmt = stmt.with_for_update(key_share=self.postgresql)
        return {row["id"]: row_view(row) for row in connection.execute(stmt).mappings()}

    def _recorded_events(self, connection: Connection,
                         ids: list[str]) -> dict[str, dict[str, int]]:
        """Per job, the life order of each recorded event and its row's sequence."""
        stmt = select(job_state.c.job_id, job_state.c.life_order, job_state.c.sequence).where(
            job_state.c.job_id.in_(ids), job_state.c.life_order.is_not(None))
        if self.mysql:
            stmt = stmt.with_for_update()
        found: dict[str, dict[str, int]] = {}
        for job_id, order, sequence in connection.execute(stmt):
            found.setdefault(job_id, {})[order] = sequence
        return found

    def _place(self, connection: Connection, row: Any, fresh: list[CommandEvent],
               recorded: dict[str, int]) -> list[dict[str, Any]]:
        """Update the job row for new events; return their history rows, numbered (late
        writes go in their place: the rows from there on are rewritten, renumbered)."""
        new = [event_state(row.id, event) for event in fresh]
        start = tail_start(recorded, fresh)
        if start is not None:
            where = (job_state.c.job_id == row.id, job_state.c.sequence >= start)
            tail = [{k: v for k, v in r.items() if k != "id"} for r in connection.execute(
                select(job_state).where(*where).order_by(job_state.c.sequence)).mappings()]
            connection.execute(delete(job_state).where(*where))
            placed = in_life_order([(s["life_order"], s) for s in tail],
                                   [(s["life_order"], s) for s in new])
            start = tail[0]["sequence"]
        else:
            placed = sorted(new, key=lambda s: s["life_order"])
            start = row.sequence + 1
        for sequence, state in enumerate(placed, start):
            state["sequence"] = sequence
        values = apply_events(row, fresh)
        values["sequence"] = row.sequence + len(new)
        connection.execute(update(job).where(job.c.id == row.id).values(columns(values)))
        return placed
