"""Jobs inside the caller's SQLAlchemy transaction: written with it, sent after its commit.

``with bgp.jobs.transaction(connection_or_session):`` makes the job store run its
reads and writes on that connection (a Session's: ``session.connection()``), inside
the transaction the caller began, each write in a SAVEPOINT of its own (except on
SQLite, whose driver does not nest them) so that a refused write (a state conflict,
an id taken) leaves the caller's transaction usable. The messages the engine would
send (a job to run, a cancel) wait for that transaction's outermost COMMIT and are
dropped on ROLLBACK, as Django's ``transaction.on_commit`` does for the Django store.

SQLAlchemy announces a commit before it happens (the ``commit`` event of the engine),
and a message sent then could reach a worker before the rows are visible. So the
listener commits the DB-API connection itself, then sends; SQLAlchemy's own COMMIT
that follows finds nothing left to commit. A commit that fails raises before anything
is sent.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

__all__ = ["Binding", "bind"]

logger = logging.getLogger("celery_bgp.jobs")

#: Connection -> callbacks waiting for its transaction's commit.
_pending: weakref.WeakKeyDictionary[Connection, list[Callable[[], Any]]] = \
    weakref.WeakKeyDictionary()
_listening: weakref.WeakSet[Engine] = weakref.WeakSet()
_guard = threading.Lock()


class Binding:
    """The connections the store's calls use, per thread (innermost last)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def current(self) -> Connection | None:
        stack = getattr(self._local, "stack", None)
        return stack[-1] if stack else None

    @contextlib.contextmanager
    def use(self, connection: Connection) -> Iterator[Connection]:
        stack = self._local.__dict__.setdefault("stack", [])
        stack.append(connection)
        try:
            yield connection
        finally:
            stack.pop()


def bind(target: Any) -> Connection:
    """The Connection of ``target`` (a Connection, or a Session's current one), in a
    transaction, with commit and rollback listened to."""
    if isinstance(target, Connection):
        connection = target
    elif callable(getattr(target, "connection", None)):  # a Session (autobegins)
        connection = target.connection()
    else:
        raise TypeError(f"transaction() takes a SQLAlchemy Connection or Session, "
                        f"not {type(target).__name__}")
    if not connection.in_transaction():
        connection.begin()  # the caller commits it (as with SQLAlchemy's autobegin)
    _listen(connection.engine)
    return connection


def on_commit(connection: Connection, fn: Callable[[], Any]) -> None:
    """Run ``fn`` after ``connection``'s transaction commits; forget it on rollback."""
    _pending.setdefault(connection, []).append(fn)


def _listen(engine: Engine) -> None:
    with _guard:
        if engine in _listening:
            return
        event.listen(engine, "commit", _committing)
        event.listen(engine, "rollback", _rolled_back)
        _listening.add(engine)


def _committing(connection: Connection) -> None:
    callbacks = _pending.pop(connection, None)
    if not callbacks:
        return
    connection.connection.dbapi_connection.commit()  # visible first, then announced
    for fn in callbacks:
        try:
            fn()
        except Exception:
            logger.exception("celery-bgp: a callback after commit failed")


def _rolled_back(connection: Connection) -> None:
    _pending.pop(connection, None)
