"""Redis event repository: one list per command, appended atomically.

``RPUSH`` is atomic, so concurrent writers never lose an event. A batch of events
is one ``EVALSHA`` of a small script that does ``RPUSH`` + ``PEXPIRE`` per command
server-side: one round trip, and about a third of the client-side cost of packing
the same commands into a pipeline. A Redis Cluster client (whose keys may live on
different nodes) gets a pipeline instead.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..extras import require
from .model import CommandEvent, newest_first
from .repository import DEFAULT_EXPIRY, EventRepository, group_by_command, parse_expiry

__all__ = ["RedisEventRepository"]

_OWN_OPTIONS = ("expiry", "prefix")

#: KEYS = one list per command; ARGV[1] = expiry in ms (0 = keep), then per key its
#: events as JSON texts joined by newlines (compact JSON never holds a raw newline):
#: one argument per command instead of one per event halves the client's packing.
_APPEND = """
local ttl = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local items = {}
  for item in string.gmatch(ARGV[i + 1], "[^\\n]+") do items[#items + 1] = item end
  redis.call('RPUSH', key, unpack(items))
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
end
return #KEYS
"""


class RedisEventRepository(EventRepository):
    """Events in Redis lists under ``<prefix>:<command id>``."""

    def __init__(
        self,
        client: Any,
        expiry: float | None = DEFAULT_EXPIRY,
        prefix: str = "bgp:events",
    ) -> None:
        self.client = client
        self.expiry = expiry
        self.prefix = prefix
        self._append = client.register_script(_APPEND)
        self._cluster = type(client).__name__ == "RedisCluster"

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisEventRepository:
        """``redis://host:port/db?expiry=600&prefix=bgp:events``.

        Other query options (``socket_timeout`` ...) go to redis-py unchanged.
        """
        redis = require("redis", "redis", "The Redis event repository")
        parts = urlsplit(url)
        own: dict[str, Any] = {
            "expiry": options.get("expiry", DEFAULT_EXPIRY),
            "prefix": options.get("prefix", "bgp:events"),
        }
        passthrough = []
        for key, value in parse_qsl(parts.query):
            if key in _OWN_OPTIONS:
                own[key] = value
            else:
                passthrough.append((key, value))
        client_url = urlunsplit(parts._replace(query=urlencode(passthrough)))
        client_kwargs = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0}
        client_kwargs.update(options.get("client_options", {}))
        client = redis.Redis.from_url(client_url, **client_kwargs)
        return cls(client, expiry=parse_expiry(own["expiry"]), prefix=own["prefix"])

    def key(self, command_id: str) -> str:
        """Redis key holding a command's events."""
        return f"{self.prefix}:{command_id}"

    def add_many(self, events: Sequence[CommandEvent]) -> None:
        if not events:
            return
        ttl = 0 if self.expiry is None else max(1, int(self.expiry * 1000))
        grouped = group_by_command(events)
        if self._cluster:
            pipe = self.client.pipeline(transaction=False)
            for command_id, group in grouped.items():
                key = self.key(command_id)
                pipe.rpush(key, *(event.to_json_bytes() for event in group))
                if ttl:
                    pipe.pexpire(key, ttl)
            pipe.execute()
            return
        keys: list[str] = []
        args: list[object] = [ttl]
        for command_id, group in grouped.items():
            keys.append(self.key(command_id))
            args.append(b"\n".join([event.to_json_bytes() for event in group]))
        self._append(keys=keys, args=args)

    def all(self, command_id: str) -> list[CommandEvent]:
        raw = self.client.lrange(self.key(command_id), 0, -1)
        return newest_first([CommandEvent.from_json(item) for item in raw])

    def close(self) -> None:
        self.client.close()
