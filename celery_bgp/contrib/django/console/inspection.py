"""Live workers from Celery's control/inspect: one short broadcast round, shared briefly.

``stats``, ``active`` and ``active_queues`` are published at once and their replies
collected together from one reply queue, so a round takes the reply timeout (1 s),
not three. Once the workers are known, a round waits only until that many have
answered (``limit``): a few milliseconds while nobody comes or goes; a round whose
answers do not match the known set is asked again in full, and so is one every
:data:`FULL_ROUND_EVERY` seconds (to find new workers). While nobody answers, the
empty answer stands until the next full round.

The last round and every worker seen in the last day ("last seen", for the ones that
are gone) are kept in Django's cache, so several admins and both console pages share
one round every few seconds.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from django.core.cache import cache
from kombu import Consumer
from kombu.utils.uuid import uuid

__all__ = ["ActiveTask", "Snapshot", "WorkerInfo", "seen_workers", "snapshot"]

logger = logging.getLogger("celery_bgp.admin")

#: Seconds a worker has to answer a broadcast.
REPLY_TIMEOUT = 1.0
#: Seconds to wait for the broker's connection before giving up (the page says so).
CONNECT_TIMEOUT = 2.0
#: A round that asks everyone (and waits the whole timeout) at least this often.
FULL_ROUND_EVERY = 30.0
#: How long a worker that stopped answering is remembered (its "last seen").
REMEMBER = timedelta(hours=24)
COMMANDS = ("stats", "active", "active_queues")


@dataclasses.dataclass
class ActiveTask:
    """A task a worker runs now (for celery-bgp jobs and commands, id = job id)."""

    id: str
    name: str
    started: datetime | None
    worker_pid: int | None


@dataclasses.dataclass
class WorkerInfo:
    """One worker as it answered the broadcast."""

    hostname: str
    pid: int | None = None
    concurrency: int | None = None
    pool: str | None = None
    uptime: float | None = None
    #: None when the worker answered another command of the round but not this one.
    queues: list[str] | None = None
    active: list[ActiveTask] | None = None
    processed: int | None = None
    prefetch: int | None = None


@dataclasses.dataclass
class Snapshot:
    """One broadcast round: who answered, or why nobody could be asked."""

    taken: datetime
    workers: dict[str, WorkerInfo]
    elapsed: float
    error: str | None = None
    full: bool = True

    @property
    def hostnames(self) -> set[str]:
        return set(self.workers)


_locks: dict[str, threading.Lock] = {}  # one per cache key: a round at a time per process
_locks_guard = threading.Lock()


def _key(app: Any, what: str) -> str:
    return f"celery_bgp:console:{what}:{app.main or 'celery'}"


def snapshot(app: Any, max_age: float = 3.0, *, fresh: bool = False) -> Snapshot:
    """The workers now: the cached round when younger than ``max_age`` seconds (with
    ``fresh``, a round taken after this call began).

    Requests of one process that find the round expired at the same moment share the
    next one: one takes it while the others wait for it (every round costs each worker
    three replies)."""
    key = _key(app, "workers")
    asked = datetime.now(timezone.utc)
    last: Snapshot | None = cache.get(key)
    if last is not None and _current(last, asked, max_age, fresh):
        return last
    with _lock(key):
        last = cache.get(key)
        if last is not None and _current(last, asked, max_age, fresh):
            return last  # taken while this request waited
        return _take(app, key, last, fresh)


def _current(last: Snapshot, asked: datetime, max_age: float, fresh: bool) -> bool:
    if fresh:
        return last.taken >= asked
    return (asked - last.taken).total_seconds() < max_age


def _lock(key: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def _take(app: Any, key: str, last: Snapshot | None, fresh: bool) -> Snapshot:
    """Take a round (quick when the workers are known) and keep it in the cache."""
    known = last.hostnames if last is not None and last.error is None else set()
    full_at = cache.get(_key(app, "full")) or 0.0
    recent = not fresh and time.time() - full_at < FULL_ROUND_EVERY
    if recent and not known and last is not None and last.error is None:
        return last  # nobody answered the last full round: wait for the next one
    quick = recent and bool(known)
    taken = _round(app, len(known) if quick else None)
    if quick and taken.error is None and taken.hostnames != known:
        taken = _round(app, None)  # someone came or went: ask everyone
    if taken.error is None and taken.full:
        cache.set(_key(app, "full"), time.time(), 3600)
    cache.set(key, taken, 60)
    _remember(app, taken)
    return taken


def seen_workers(app: Any) -> dict[str, dict[str, Any]]:
    """Workers that answered in the last day: hostname -> {last_seen, pid, queues}."""
    return dict(cache.get(_key(app, "seen")) or {})


def _remember(app: Any, taken: Snapshot) -> None:
    if taken.error is not None:
        return
    key = _key(app, "seen")
    seen = cache.get(key) or {}
    for name, worker in taken.workers.items():
        seen[name] = {"last_seen": taken.taken, "pid": worker.pid, "queues": worker.queues}
    horizon = taken.taken - REMEMBER
    seen = {name: info for name, info in seen.items() if info["last_seen"] >= horizon}
    cache.set(key, seen, int(REMEMBER.total_seconds()))


def _round(app: Any, limit: int | None) -> Snapshot:
    """Ask ``stats``, ``active`` and ``active_queues``; fold the answers."""
    started = time.monotonic()
    taken = datetime.now(timezone.utc)
    try:
        replies = _broadcast(app, limit)
    except Exception as exc:  # broker down, refused, timed out: the page says so
        logger.warning("celery-bgp console: the workers broadcast failed: %r", exc)
        return Snapshot(taken, {}, time.monotonic() - started,
                        error=f"{type(exc).__name__}: {exc}", full=limit is None)
    workers: dict[str, WorkerInfo] = {}
    for name, stats in replies["stats"].items():
        workers[name] = _from_stats(name, stats)
    for name, queues in replies["active_queues"].items():
        info = workers.setdefault(name, WorkerInfo(name))
        info.queues = sorted(q.get("name", "?") for q in queues or () if isinstance(q, dict))
    for name, tasks in replies["active"].items():
        info = workers.setdefault(name, WorkerInfo(name))
        info.active = [_task(t) for t in tasks or () if isinstance(t, dict)]
    return Snapshot(taken, dict(sorted(workers.items())), time.monotonic() - started,
                    full=limit is None)


def _broadcast(app: Any, limit: int | None) -> dict[str, dict[str, Any]]:
    """Publish the :data:`COMMANDS` (a ticket each) at once and collect every reply from
    one reply queue: one wait for all three, on one connection (``inspect()`` would wait
    once per command). ``limit``: stop once that many workers answered each command."""
    replies: dict[str, dict[str, Any]] = {command: {} for command in COMMANDS}
    with app.connection_for_write(connect_timeout=CONNECT_TIMEOUT) as connection:
        connection.ensure_connection(max_retries=0, timeout=CONNECT_TIMEOUT)
        mailbox = app.control.mailbox(connection)
        channel = connection.default_channel
        timeout = reply_timeout(connection)
        tickets = {uuid(): command for command in COMMANDS}
        for ticket, command in tickets.items():
            mailbox._publish(command, {}, reply_ticket=ticket, channel=channel,
                             timeout=timeout, serializer=mailbox.serializer)
        expected = limit * len(COMMANDS) if limit else None
        received = 0

        def on_reply(body: Any, message: Any) -> None:
            nonlocal received
            command = tickets.get(message.headers.get("ticket"))
            if command is not None and isinstance(body, dict):
                replies[command].update(body)
                received += 1

        queue = mailbox.reply_queue
        deadline = time.monotonic() + timeout
        try:
            with Consumer(channel, [queue], accept=mailbox.accept, no_ack=True,
                          callbacks=[on_reply]):
                while expected is None or received < expected:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        connection.drain_events(timeout=left)
                    except TimeoutError:
                        break
        finally:
            channel.after_reply_message_received(queue.name)
    return replies


def reply_timeout(connection: Any) -> float:
    """:data:`REPLY_TIMEOUT`, plus two polls on a transport that polls (the worker polls
    for the command, this side for the reply: kombu's filesystem transport polls every
    second); Redis and RabbitMQ deliver at once."""
    transport = connection.transport
    poll = getattr(transport, "polling_interval", None) or 0.0
    if transport.driver_type in ("redis", "amqp"):
        poll = 0.0
    return REPLY_TIMEOUT + min(2 * float(poll), 2.0)


def _from_stats(name: str, stats: Any) -> WorkerInfo:
    stats = stats if isinstance(stats, dict) else {}
    pool = stats.get("pool") if isinstance(stats.get("pool"), dict) else {}
    totals = stats.get("total") if isinstance(stats.get("total"), dict) else {}
    return WorkerInfo(
        name, pid=stats.get("pid"), concurrency=pool.get("max-concurrency"),
        pool=_pool_name(pool.get("implementation")), uptime=stats.get("uptime"),
        processed=sum(v for v in totals.values() if isinstance(v, int)),
        prefetch=stats.get("prefetch_count"))


def _pool_name(implementation: Any) -> str | None:
    """``celery.concurrency.prefork:TaskPool`` -> ``prefork``."""
    if not isinstance(implementation, str):
        return None
    return implementation.split(":")[0].rsplit(".", 1)[-1]


def _task(task: dict[str, Any]) -> ActiveTask:
    start = task.get("time_start")
    started = None
    if isinstance(start, (int, float)) and start > 0:
        started = datetime.fromtimestamp(start, timezone.utc)
    return ActiveTask(str(task.get("id")), str(task.get("name")), started,
                      task.get("worker_pid"))
