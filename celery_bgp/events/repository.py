"""The event repository contract and the URL scheme registry that builds one.

Every repository must be safe under concurrent writers: two processes adding events
for the same command id must never lose one (the seed's caches read-modify-write
and do). Expiry is per command and sliding: each add pushes it back.
"""
from __future__ import annotations

import abc
import contextlib
import importlib
from collections.abc import Iterable, Sequence
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..exceptions import ImproperlyConfigured
from .model import CommandEvent

__all__ = [
    "DEFAULT_EXPIRY",
    "SCHEMES",
    "EventRepository",
    "check_repository",
    "repository_from_url",
    "resolve_repository",
]

#: Seconds an idle command's events are kept (the seed's 10 minutes).
DEFAULT_EXPIRY = 600.0


class EventRepository(abc.ABC):
    """Stores :class:`CommandEvent` objects by command id."""

    #: Seconds after the last add before a command's events go; ``None`` keeps them.
    expiry: float | None = DEFAULT_EXPIRY
    #: Exceptions of :meth:`add_many` that blame an event, not the store: the recorder
    #: then writes the batch one event at a time and quarantines the one refused
    #: (instead of retrying the whole batch, then dropping it). Connection errors must
    #: not be among them.
    event_errors: tuple[type[BaseException], ...] = (TypeError, ValueError)

    @abc.abstractmethod
    def add_many(self, events: Sequence[CommandEvent]) -> None:
        """Store events, in as few round trips as the backend allows."""

    @abc.abstractmethod
    def all(self, command_id: str) -> list[CommandEvent]:
        """Return every stored event of a command, newest first."""

    def add(self, event: CommandEvent) -> None:
        """Store one event."""
        self.add_many([event])

    def latest(self, command_id: str) -> CommandEvent | None:
        """Return the newest event of a command, or ``None``."""
        events = self.all(command_id)
        return events[0] if events else None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the repository may be used again afterwards."""

    def on_idle(self) -> None:  # noqa: B027 - optional hook
        """The background writer has had nothing to write for a while.

        Stores whose connections belong to the writing thread (Django's) close them
        here, so an idle process holds no database session.
        """


#: URL scheme -> "module:Class"; the class has ``from_url(url, **options)``.
SCHEMES: dict[str, str] = {
    "memory": "celery_bgp.events.memory:MemoryEventRepository",
    "redis": "celery_bgp.events.redis:RedisEventRepository",
    "rediss": "celery_bgp.events.redis:RedisEventRepository",
    "unix": "celery_bgp.events.redis:RedisEventRepository",
    "django-cache": "celery_bgp.events.django_cache:DjangoCacheEventRepository",
    "django-db": "celery_bgp.contrib.django.events:DjangoDbEventRepository",
    "azuretable": "celery_bgp.events.azure_table:AzureTableEventRepository",
}

ENTRY_POINT_GROUP = "celery_bgp.event_repositories"


def _scheme_target(scheme: str) -> str:
    if scheme in SCHEMES:
        return SCHEMES[scheme]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == scheme:
            return ep.value
    known = sorted({*SCHEMES, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))})
    raise ImproperlyConfigured(
        f"unknown event repository scheme {scheme!r}; known: {', '.join(known)}"
    )


def check_repository(value: Any) -> None:
    """Refuse an event repository setting that can never work, before anything connects.

    A URL must have a known scheme; otherwise an instance or a zero-argument factory.
    """
    if isinstance(value, str):
        scheme = urlsplit(value).scheme
        if not scheme:
            raise ImproperlyConfigured(
                f"event repository URL {value!r} has no scheme (e.g. memory://, redis://host/1)"
            )
        _scheme_target(scheme)
    elif not (isinstance(value, EventRepository) or callable(value)):
        raise TypeError(f"event_repository must be a URL, an EventRepository or a factory, "
                        f"not {type(value).__name__}")


def import_repository(value: Any) -> None:
    """Import the module of a repository URL's class, and nothing more (no connection).

    A worker does it before it forks its pool, so each child shares the imported code
    instead of importing it again on its first event.
    """
    if isinstance(value, str):
        with contextlib.suppress(ImproperlyConfigured, ImportError):
            importlib.import_module(_scheme_target(urlsplit(value).scheme).partition(":")[0])


def repository_from_url(url: str, **options: Any) -> EventRepository:
    """Build a repository from a URL such as ``redis://127.0.0.1:6379/1``."""
    check_repository(url)
    module_name, _, attr = _scheme_target(urlsplit(url).scheme).partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    return cls.from_url(url, **options)


def resolve_repository(value: Any, **options: Any) -> EventRepository:
    """Accept a repository instance, a URL, or a zero-argument factory."""
    if isinstance(value, EventRepository):
        return value
    if isinstance(value, str):
        return repository_from_url(value, **options)
    if callable(value):
        return resolve_repository(value(), **options)
    check_repository(value)  # raises: neither a URL, an instance nor a factory
    raise AssertionError("unreachable")  # pragma: no cover


def parse_expiry(value: Any) -> float | None:
    """Read an expiry option: seconds, or ``none``/``never`` to keep events forever."""
    if value is None or (isinstance(value, str) and value.lower() in ("none", "never", "")):
        return None
    seconds = float(value)
    if seconds <= 0:
        raise ImproperlyConfigured(
            f"event expiry must be positive seconds or 'none', got {value!r}"
        )
    return seconds


def url_options(url: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """Merge ``?key=value`` query options of ``url`` into a copy of ``defaults``.

    Only keys present in ``defaults`` are accepted, so a typo is an error, not a no-op.
    """
    merged = dict(defaults)
    for key, values in parse_qs(urlsplit(url).query).items():
        if key not in defaults:
            raise ImproperlyConfigured(
                f"unknown option {key!r} in event repository URL; known: {', '.join(defaults)}"
            )
        merged[key] = values[-1]
    return merged


def group_by_command(events: Iterable[CommandEvent]) -> dict[str, list[CommandEvent]]:
    """Group events by command id, keeping their order."""
    grouped: dict[str, list[CommandEvent]] = {}
    for event in events:
        grouped.setdefault(event.command_id, []).append(event)
    return grouped
