"""How the SQLAlchemy store talks to its database: connections, transactions, row locks.

- :meth:`Plumbing._begin`: a transaction of the store's own, or a SAVEPOINT in the
  caller's (``bgp.jobs.transaction(...)``, :mod:`.transactions`).
- :meth:`Plumbing._read`: reads; autocommit on PostgreSQL (no BEGIN, no ROLLBACK).
- :meth:`Plumbing._cursor`: PostgreSQL + psycopg 3, a client-side-binding cursor in
  autocommit, for the hot path (:mod:`celery_bgp.jobs.pgwire`).
- :meth:`Plumbing._lock_row`: the job row locked before anything is read
  (``FOR NO KEY UPDATE`` / ``FOR UPDATE``; SQLite: a write first takes the database lock).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Engine

from celery_bgp.jobs import pgwire
from celery_bgp.jobs.store import JobNotFound

from . import transactions
from .engines import MYSQL, engine_from_url, track
from .records import row_view
from .schema import job

__all__ = ["Plumbing"]


class Plumbing:
    """The connection handling under :class:`~.store.SQLAlchemyJobStore`."""

    def __init__(self, engine: Engine | str) -> None:
        self.engine = engine_from_url(engine) if isinstance(engine, str) else engine
        track(self.engine)
        self.dialect = self.engine.dialect.name
        self.mysql = self.dialect in MYSQL
        self.sqlite = self.dialect == "sqlite"
        self.postgresql = self.dialect == "postgresql"
        #: PostgreSQL + psycopg 3: the hot path (see :mod:`celery_bgp.jobs.pgwire`).
        self._fast = (self.engine.execution_options(isolation_level="AUTOCOMMIT")
                      if self.postgresql and self.engine.dialect.driver == "psycopg" else None)
        self.binding = transactions.Binding()
        self._seen = pgwire.Seen()  # row versions for one-round-trip transitions


    @contextlib.contextmanager
    def transaction(self, target: Any) -> Iterator[Connection]:
        """Run this thread's store calls in ``target``'s transaction (a Connection or a
        Session); messages wait for its commit (see :mod:`.transactions`)."""
        with self.binding.use(transactions.bind(target)) as connection:
            yield connection

    def on_commit(self, fn: Callable[[], Any]) -> None:
        connection = self.binding.current()
        if connection is None:
            fn()
        else:
            transactions.on_commit(connection, fn)

    @contextlib.contextmanager
    def _begin(self) -> Iterator[Connection]:
        """A transaction of the store's own, or a savepoint in the caller's."""
        bound = self.binding.current()
        if bound is None:
            with self.engine.begin() as connection:
                yield connection
        elif self.sqlite:  # pysqlite cannot nest: the caller's transaction it is
            yield bound
        else:
            with bound.begin_nested():
                yield bound

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        """A connection for reads (autocommit on PostgreSQL: no BEGIN, no ROLLBACK)."""
        bound = self.binding.current()
        if bound is not None:
            yield bound
            return
        with (self._fast or self.engine).connect() as connection:
            yield connection

    def _single(self) -> contextlib.AbstractContextManager[Connection]:
        """One statement that writes: autocommit where the hot path is, else a transaction."""
        if self._fast is not None and self.binding.current() is None:
            return self._read()
        return self._begin()

    @contextlib.contextmanager
    def _wire(self) -> Iterator[pgwire.Wire]:
        """The hot path's cursors on one autocommit connection
        (:class:`celery_bgp.jobs.pgwire.Wire`): single statements prepared where psycopg
        prepares on it (its ``prepare_threshold``: ``?prepare_threshold=N`` in a ``db+``
        URL, psycopg's default 5 in an Engine of yours unless its ``connect_args`` say
        None), multi-statement strings bound on the client."""
        import psycopg

        assert self._fast is not None
        with self._fast.connect() as connection:
            driver = connection.connection.driver_connection
            try:
                if driver.prepare_threshold is None:
                    yield pgwire.Wire(lambda: psycopg.ClientCursor(driver))
                else:
                    yield pgwire.Wire(lambda: psycopg.ClientCursor(driver),
                                      lambda: psycopg.Cursor(driver), driver.pipeline)
            except (psycopg.OperationalError, psycopg.InterfaceError):
                connection.invalidate()  # broken: the pool will not hand it out again
                raise

    def _hot(self) -> bool:
        return self._fast is not None and self.binding.current() is None

    def _lock_row(self, connection: Connection, job_id: str) -> Any:
        """Lock one job row for the rest of the transaction; return it as now committed."""
        where = job.c.id == job_id
        if self.sqlite:  # no row locks: write first, so this transaction holds the write lock
            if not connection.execute(update(job).where(where).values(
                    sequence=job.c.sequence)).rowcount:
                raise JobNotFound(f"no job {job_id}")
            found = connection.execute(select(job).where(where)).mappings().first()
        else:
            found = connection.execute(
                select(job).where(where).with_for_update(key_share=self.postgresql)
            ).mappings().first()
        if found is None:
            raise JobNotFound(f"no job {job_id}")
        return row_view(found)

    def _write_lock(self, connection: Connection) -> None:
        """SQLite: take the database write lock now (a zero-row UPDATE does)."""
        if self.sqlite:
            connection.execute(update(job).where(job.c.id == "").values(sequence=job.c.sequence))

    @contextlib.contextmanager
    def _writing(self, job_id: str) -> Iterator[Connection]:
        """A transaction that writes rows of an existing job (else JobNotFound)."""
        try:
            with self._begin() as connection:
                where = job.c.id == job_id
                if self.sqlite:
                    found = connection.execute(update(job).where(where).values(
                        sequence=job.c.sequence)).rowcount
                else:
                    found = connection.execute(select(job.c.id).where(where)).first()
                if not found:
                    raise JobNotFound(f"no job {job_id}")
                yield connection
        except sa_exc.IntegrityError as exc:  # the job was deleted meanwhile
            if self.get(job_id) is None:
                raise JobNotFound(f"no job {job_id}") from exc
            raise

    def _upsert(self, connection: Connection, table: Any, rows: list[dict[str, Any]],
                keys: Sequence[str], columns: Sequence[str]) -> None:
        """Insert or update by a unique key, in one statement."""
        if not rows:
            return
        if self.mysql:
            stmt = mysql.insert(table).values(rows)
            stmt = stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in columns})
        else:
            dialect = postgresql if self.postgresql else sqlite
            stmt = dialect.insert(table).values(rows)
            stmt = stmt.on_conflict_do_update(index_elements=list(keys),
                                              set_={c: stmt.excluded[c] for c in columns})
        connection.execute(stmt)

    def _insert_missing(self, connection: Connection, rows: list[dict[str, Any]]) -> None:
        if self.mysql:
            connection.execute(insert(job).prefix_with("IGNORE"), rows)
        else:
            dialect = postgresql if self.postgresql else sqlite
            connection.execute(dialect.insert(job).on_conflict_do_nothing(), rows)
