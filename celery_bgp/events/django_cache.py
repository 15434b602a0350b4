"""Event repository on any configured Django cache alias, without read-modify-write.

The cache API has no atomic append, so each event claims its own slot key with
``cache.add`` (atomic "set if absent" in every Django backend: locmem, Redis,
Memcached, database). Concurrent writers therefore never overwrite each other; a
shared counter key is only a hint of where free slots start.

Expiry is per event: each slot lives ``expiry`` seconds after it was written.
(Sliding it per command would mean touching every earlier slot on each add, a
quadratic cost the cache API cannot batch.) Readers skip slots the cache evicted.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from ..extras import require
from .model import CommandEvent, newest_first
from .repository import DEFAULT_EXPIRY, EventRepository, parse_expiry, url_options

__all__ = ["DjangoCacheEventRepository"]

_CHUNK = 16


class DjangoCacheEventRepository(EventRepository):
    """Events in ``<prefix>:<command id>:<slot>`` keys of a Django cache."""

    def __init__(
        self,
        alias: str = "default",
        expiry: float | None = DEFAULT_EXPIRY,
        prefix: str = "bgp:events",
    ) -> None:
        require("django", "django", "The Django cache event repository")
        self.alias = alias
        self.expiry = expiry
        self.prefix = prefix

    @classmethod
    def from_url(cls, url: str, **options: Any) -> DjangoCacheEventRepository:
        """``django-cache://<alias>?expiry=600&prefix=bgp:events`` (alias defaults to default)."""
        opts = url_options(
            url,
            {
                "expiry": options.get("expiry", DEFAULT_EXPIRY),
                "prefix": options.get("prefix", "bgp:events"),
            },
        )
        alias = urlsplit(url).netloc or "default"
        return cls(alias=alias, expiry=parse_expiry(opts["expiry"]), prefix=opts["prefix"])

    @property
    def cache(self) -> Any:
        """The Django cache for :attr:`alias` (looked up per call: caches are per thread)."""
        from django.core.cache import caches

        return caches[self.alias]

    def _slot(self, command_id: str, n: int) -> str:
        return f"{self.prefix}:{command_id}:{n}"

    def _hint(self, command_id: str) -> str:
        return f"{self.prefix}:{command_id}:n"

    def add_many(self, events: Sequence[CommandEvent]) -> None:
        for event in events:
            self._append(event)

    def _append(self, event: CommandEvent) -> None:
        cache = self.cache
        command_id = event.command_id
        n = cache.get(self._hint(command_id)) or 0
        text = event.to_json()
        while not cache.add(self._slot(command_id, n), text, self.expiry):
            n += 1
        cache.set(self._hint(command_id), n + 1, self.expiry)

    def all(self, command_id: str) -> list[CommandEvent]:
        cache = self.cache
        claimed = cache.get(self._hint(command_id)) or 0
        found: list[CommandEvent] = []
        start = 0
        while True:
            keys = [self._slot(command_id, n) for n in range(start, start + _CHUNK)]
            values = cache.get_many(keys)
            found.extend(CommandEvent.from_json(values[k]) for k in keys if k in values)
            start += _CHUNK
            # Past the claimed count, a chunk that ends on a free slot ends the list;
            # below it, gaps (a cache that evicted a slot) are skipped, not trusted.
            if start >= claimed and keys[-1] not in values:
                break
        return newest_first(found)
