"""Celery queue names -> Azure Storage queue names: valid, stable and collision-free.

Azure queue names are 3-63 characters of lowercase letters, digits and single
hyphens, starting and ending with a letter or digit. A Celery name that already
has that shape (with the prefix in front) is used as it is, so queues stay easy to
find in the portal. Any other name (``MyQueue``, ``my__queue``, ``ab``, ``a.b@c``,
200 characters ...) becomes a readable stem plus ``-h`` and 16 hex digits of the
SHA-256 of the exact original name: case and punctuation survive, and two names
never share a physical queue (up to a 64-bit hash collision).

Each logical queue owns a family of physical queues: the base (normal priority),
``<base>-p0``/``-p1``/``-p3``/``-p4`` for the other priority levels, and
``<base>-poison``. A name used as it is may not end like a family member or a
hashed name, so the families of two different names never overlap.
"""
from __future__ import annotations

import hashlib
import re

from ..exceptions import ImproperlyConfigured

__all__ = [
    "LEVELS",
    "MAX_PREFIX",
    "NORMAL_LEVEL",
    "POISON_SUFFIX",
    "azure_queue_name",
    "check_prefix",
    "is_single_level",
    "level_queue",
    "poison_queue",
]

MAX_NAME = 63
POISON_SUFFIX = "-poison"
#: Room left for the longest family suffix.
MAX_BASE = MAX_NAME - len(POISON_SUFFIX)
MAX_PREFIX = 24
HASH_DIGITS = 16

#: Priority levels, most urgent first (celery_bgp.priority.Priority values).
LEVELS = (0, 1, 2, 3, 4)
NORMAL_LEVEL = 2

_VALID = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9]))*\Z")
_VALID_PREFIX = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?!-))*\Z")
_RESERVED_END = re.compile(rf"-(?:p[0-9]|poison|h[0-9a-f]{{{HASH_DIGITS}}})\Z")
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


def check_prefix(prefix: str) -> str:
    """Validate ``queue_name_prefix``: lowercase letters, digits, single hyphens."""
    if prefix and (len(prefix) > MAX_PREFIX or not _VALID_PREFIX.match(prefix)):
        raise ImproperlyConfigured(
            f"queue_name_prefix {prefix!r} must be at most {MAX_PREFIX} lowercase letters, "
            "digits and single hyphens, starting with a letter or digit"
        )
    return prefix


def azure_queue_name(name: str, prefix: str = "") -> str:
    """The base Azure queue name of Celery queue ``name`` under ``prefix``."""
    check_prefix(prefix)
    candidate = prefix + name
    if (
        3 <= len(candidate) <= MAX_BASE
        and _VALID.match(candidate)
        and not _RESERVED_END.search(candidate)
    ):
        return candidate
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_DIGITS]
    room = MAX_BASE - len(prefix) - len("-h") - HASH_DIGITS
    stem = _NOT_ALNUM.sub("-", name.lower()).strip("-")[:room].strip("-") or "q"
    return f"{prefix}{stem}-h{digest}"


def is_single_level(name: str) -> bool:
    """Celery's control and event queues get one physical queue, not five."""
    return name.endswith(".pidbox") or name.startswith("celeryev.")


def is_reply_queue(name: str) -> bool:
    """A ``celery inspect``/``control`` reply queue (``<oid>.reply.celery.pidbox``)."""
    return name.endswith(".pidbox") and ".reply." in name


def level_queue(base: str, level: int) -> str:
    """Physical queue of priority ``level`` (0 = critical .. 4 = none) for ``base``."""
    return base if level == NORMAL_LEVEL else f"{base}-p{level}"


def poison_queue(base: str) -> str:
    """The dead-letter queue of ``base``: ``<base>-poison``."""
    return base + POISON_SUFFIX


def level_for_priority(priority: object) -> int:
    """Level (0 critical .. 4 none) of a kombu ``priority`` number.

    Higher numbers are more urgent, as on RabbitMQ and as
    :meth:`Priority.for_transport` gives them (9, 7, 5, 3, 1): 8-9 critical, 6-7 high,
    4-5 normal, 2-3 low, 1 none. ``None`` and 0 mean normal, because kombu sends 0
    when the caller gave no priority at all.
    """
    if priority is None:
        return NORMAL_LEVEL
    try:
        number = int(priority)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return NORMAL_LEVEL
    if number == 0:
        return NORMAL_LEVEL
    if number >= 8:
        return 0
    if number >= 6:
        return 1
    if number >= 4:
        return 2
    if number >= 2:
        return 3
    return 4
