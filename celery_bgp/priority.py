"""Five priority levels (HiveMind's) and their mapping onto each broker's own scale.

Brokers disagree on direction: RabbitMQ serves the *highest* number first (the queue
needs ``x-max-priority``), Redis serves the *lowest* first (kombu's priority steps).
Celery passes ``priority=`` through unchanged, so a number that means "urgent" on one
broker means "whenever" on the other. :meth:`Priority.for_transport` picks the number.
"""
from __future__ import annotations

import enum

__all__ = ["REDIS_PRIORITY_STEPS", "Priority", "broker_priority"]


class Priority(enum.IntEnum):
    """Job and command priority; a lower value is more urgent (as in HiveMind)."""

    CRITICAL = 0
    HIGH = 1
    NORMAL = 2
    LOW = 3
    NONE = 4

    def for_transport(self, transport: str) -> int:
        """Return the ``priority=`` number that means this level on ``transport``.

        ``transport`` is a kombu driver type or URL scheme (``amqp``, ``redis``,
        ``azurequeue``, ``memory`` ...).
        """
        scheme = transport.split(":", 1)[0].split("+", 1)[0].lower()
        if scheme in _AMQP:
            return _AMQP_LEVELS[self]
        if scheme in _AZURE:
            return _AZURE_LEVELS[self]
        return _STEP_LEVELS[self]


_AMQP = {"amqp", "amqps", "pyamqp", "librabbitmq", "rabbitmq", "qpid"}

#: RabbitMQ: higher first; fits ``x-max-priority`` of 10 (Celery's ``task_queue_max_priority``).
_AMQP_LEVELS = {
    Priority.CRITICAL: 9,
    Priority.HIGH: 7,
    Priority.NORMAL: 5,
    Priority.LOW: 3,
    Priority.NONE: 0,
}

_AZURE = {"azurequeue"}

#: celery-bgp's Azure Storage Queue transport: higher first, and 0 (kombu's default when
#: no priority is given) means normal, so it cannot double as "critical".
_AZURE_LEVELS = {
    Priority.CRITICAL: 9,
    Priority.HIGH: 7,
    Priority.NORMAL: 5,
    Priority.LOW: 3,
    Priority.NONE: 1,
}

#: Redis and other virtual transports: lower first, one priority step per level.
_STEP_LEVELS = {
    Priority.CRITICAL: 0,
    Priority.HIGH: 2,
    Priority.NORMAL: 4,
    Priority.LOW: 6,
    Priority.NONE: 9,
}

#: ``broker_transport_options['priority_steps']`` that gives each level its own Redis list.
REDIS_PRIORITY_STEPS = sorted(_STEP_LEVELS.values())


def broker_priority(value: Priority | int | str | None, transport: str) -> int | None:
    """Translate a :class:`Priority` (or its name) for ``transport``; pass ints through.

    A plain ``int`` is taken as a broker-native number, as Celery users already write.
    """
    if value is None:
        return None
    if isinstance(value, Priority):
        return value.for_transport(transport)
    if isinstance(value, str):
        try:
            return Priority[value.upper()].for_transport(transport)
        except KeyError:
            raise ValueError(
                f"unknown priority {value!r}; use one of {[p.name for p in Priority]}"
            ) from None
    return int(value)
