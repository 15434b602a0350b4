"""Messages waiting per queue (and per priority where the broker shows it), from the broker.

- Redis: kombu keeps one list per priority step (``queue``, ``queue\\x06\\x163``, ...:
  ``Channel._q_for_pri`` over ``priority_steps``); one pipeline of ``LLEN``.
- RabbitMQ: a passive ``queue.declare`` answers the ready-message and consumer counts;
  AMQP does not tell how many of them wait at each priority.
- Azure Storage Queue (``azurequeue://``, :mod:`celery_bgp.transport`): one physical
  queue per priority level, each with an approximate count, and the ``-poison`` queue.
- kombu's filesystem transport (the demo): the message files of each queue.

Any other transport gets "not available"; a broker that cannot be reached gets its
error on the page, never a 500.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from celery_bgp.priority import _STEP_LEVELS, Priority

__all__ = ["BrokerReport", "Depth", "queue_depths"]

logger = logging.getLogger("celery_bgp.admin")

#: Seconds to wait for the broker (connect, each answer).
TIMEOUT = 2.0
SUPPORTED = ("redis", "rediss", "amqp", "azurequeue", "filesystem")
_STEP_NAMES = {step: level.name for level, step in _STEP_LEVELS.items()}
_AZURE_LEVELS = {level.value: level.name for level in Priority}


@dataclasses.dataclass
class Depth:
    """What the broker says about one queue."""

    queue: str
    total: int | None = None
    #: (label, count) per priority, most urgent first; None where the broker cannot tell.
    levels: list[tuple[str, int]] | None = None
    consumers: int | None = None
    poison: int | None = None
    note: str = ""


@dataclasses.dataclass
class BrokerReport:
    transport: str
    depths: dict[str, Depth] = dataclasses.field(default_factory=dict)
    error: str | None = None
    note: str = ""
    #: Labels of the priority columns (empty when the broker has none to show).
    levels: list[str] = dataclasses.field(default_factory=list)
    has_poison: bool = False


def queue_depths(app: Any, queues: list[str]) -> BrokerReport:
    """Ask the app's broker how many messages wait in each of ``queues``."""
    options = dict(app.conf.broker_transport_options or {})
    options.setdefault("socket_timeout", TIMEOUT)
    options.setdefault("socket_connect_timeout", TIMEOUT)
    try:
        connection = app.connection_for_read(connect_timeout=TIMEOUT,
                                             transport_options=options)
    except Exception as exc:  # a broker URL kombu does not know
        return BrokerReport("?", error=f"{type(exc).__name__}: {exc}")
    with connection:
        transport = connection.transport.driver_type
        if transport not in SUPPORTED:
            return BrokerReport(transport, note=f"Queue depths are not available for "
                                                f"{transport}.")
        try:
            connection.ensure_connection(max_retries=0, timeout=TIMEOUT)
            return _READERS[transport](connection, transport, queues)
        except Exception as exc:
            logger.warning("celery-bgp console: could not read queue depths from %s: %r",
                           connection.as_uri(), exc)
            return BrokerReport(transport, error=f"{connection.as_uri()}: "
                                                 f"{type(exc).__name__}: {exc}")


def _redis(connection: Any, transport: str, queues: list[str]) -> BrokerReport:
    channel = connection.default_channel
    steps = sorted(set(channel.priority_steps))
    named = set(steps) == set(_STEP_NAMES)  # the project's five levels (REDIS_PRIORITY_STEPS)
    labels = [_STEP_NAMES[step] if named else f"step {step}" for step in steps]
    with channel.conn_or_acquire() as client, client.pipeline() as pipe:
        for queue in queues:
            for step in steps:
                pipe.llen(channel._q_for_pri(queue, step))
        pipe.hlen(channel.unacked_key)
        counts = pipe.execute()
    report = BrokerReport(transport, levels=labels)
    for i, queue in enumerate(queues):
        row = [int(n or 0) for n in counts[i * len(steps):(i + 1) * len(steps)]]
        report.depths[queue] = Depth(queue, sum(row), list(zip(labels, row, strict=True)))
    report.note = (f"One Redis list per priority step (priority_steps {steps}). "
                   f"{counts[-1]} more message{'s' if counts[-1] != 1 else ''} of any queue "
                   "delivered to workers and not yet acknowledged.")
    return report


def _amqp(connection: Any, transport: str, queues: list[str]) -> BrokerReport:
    report = BrokerReport(transport, note="RabbitMQ counts the messages ready for delivery "
                                          "(not those a worker holds unacknowledged); AMQP "
                                          "does not tell how many wait at each priority.")
    channel = connection.channel()
    try:
        for queue in queues:
            try:
                _name, count, consumers = channel.queue_declare(queue=queue, passive=True)
                report.depths[queue] = Depth(queue, count, consumers=consumers)
            except connection.channel_errors:  # 404: no such queue; the channel is closed
                report.depths[queue] = Depth(queue, 0, note="not declared")
                channel = connection.channel()
    finally:
        _close(channel)
    return report


def _azure(connection: Any, transport: str, queues: list[str]) -> BrokerReport:
    from celery_bgp.transport.poison import PoisonQueues

    channel = connection.default_channel
    storage = channel.transport.storage
    poison = PoisonQueues(connection)
    labels = [_AZURE_LEVELS[level] for level in sorted(_AZURE_LEVELS)]
    jobs = [(queue, level, physical) for queue in queues
            for level, physical in channel.physical_queues(queue)]
    with ThreadPoolExecutor(8, thread_name_prefix="bgp-depth") as pool:
        sizes = list(pool.map(lambda job: storage.queue_size(job[2]), jobs))
        poisoned = list(pool.map(poison.count, queues))
    report = BrokerReport(transport, levels=labels, has_poison=True,
                          note="Azure gives approximate counts: one physical queue per "
                               "priority level, plus <queue>-poison for messages that kept "
                               "failing or could not be read.")
    for queue, count in zip(queues, poisoned, strict=True):
        report.depths[queue] = Depth(queue, 0, [(label, 0) for label in labels], poison=count)
    for (queue, level, _physical), size in zip(jobs, sizes, strict=True):
        depth = report.depths[queue]
        depth.total = (depth.total or 0) + size
        depth.levels[level] = (labels[level], size)  # type: ignore[index]
    return report


def _filesystem(connection: Any, transport: str, queues: list[str]) -> BrokerReport:
    channel = connection.default_channel
    report = BrokerReport(transport, note="kombu's filesystem transport: the message files "
                                          "of each queue (no priorities).")
    for queue in queues:
        report.depths[queue] = Depth(queue, channel._size(queue))
    return report


def _close(channel: Any) -> None:
    with contextlib.suppress(Exception):  # already closed by the broker
        channel.close()


_READERS = {"redis": _redis, "rediss": _redis, "amqp": _amqp, "azurequeue": _azure,
            "filesystem": _filesystem}
