"""Typed commands: the base dataclass, command ids, names, and the JSON codec.

A command is the unit that travels: its fields are the parameters of one piece of
background work. It is encoded to plain JSON types on dispatch and validated back
into its registered type on the worker, so a message can never name a class to build.
"""
from __future__ import annotations

import base64
import dataclasses
import logging
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from functools import cache
from typing import Any, ClassVar, Protocol, runtime_checkable

import pydantic
import pydantic_core

from .exceptions import ImproperlyConfigured, InvalidCommand, PayloadTooLarge

logger = logging.getLogger("celery_bgp")

__all__ = [
    "BackgroundCommand",
    "Command",
    "command_name",
    "decode_command",
    "encode_command",
    "new_command_id",
    "utcnow",
]


def new_command_id() -> str:
    """Return a 22-character URL-safe unique id (a UUID4 in base64, as in the seed).

    Never starting with ``-``, so an id can be passed on a command line
    (``celery bgp status <id>``) without being read as an option.
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if text[0] != "-":
            return text


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(timezone.utc)


@dataclasses.dataclass(kw_only=True)
class BackgroundCommand:
    """Base class for commands: an ``id`` and an aware-UTC ``timestamp``, both defaulted.

    Derive a ``@dataclass`` from it and add the parameters as fields::

        @dataclass
        class ResizeImage(BackgroundCommand):
            url: str

    ``id`` and ``timestamp`` are keyword-only, so subclasses may declare fields
    without defaults. Set ``__command_name__`` to pin the wire name (and thus the
    Celery task name) when the class may move between modules.
    """

    __command_name__: ClassVar[str | None] = None

    id: str = dataclasses.field(default_factory=new_command_id)
    timestamp: datetime = dataclasses.field(default_factory=utcnow)

    def __post_init__(self) -> None:
        if self.timestamp.tzinfo is None:
            raise InvalidCommand(
                f"{type(self).__name__}.timestamp must be timezone-aware (got a naive datetime)"
            )
        self.timestamp = self.timestamp.astimezone(timezone.utc)


@runtime_checkable
class Command(Protocol):
    """What any command provides, derived from :class:`BackgroundCommand` or not."""

    id: str
    timestamp: datetime


def command_name(command_type: type) -> str:
    """Return the registered name of a command type.

    ``__command_name__`` when the class sets it, else ``module.QualName``.
    """
    explicit = getattr(command_type, "__command_name__", None)
    if explicit:
        return str(explicit)
    return f"{command_type.__module__}.{command_type.__qualname__}"


def check_command_type(command_type: Any) -> type:
    """Raise :class:`ImproperlyConfigured` unless ``command_type`` can be a command."""
    if command_type in _checked:
        return command_type
    _check(command_type)
    _checked.add(command_type)
    return command_type


_checked: set[type] = set()


def _check(command_type: Any) -> None:
    if not isinstance(command_type, type):
        raise ImproperlyConfigured(f"a command type must be a class, got {command_type!r}")
    if dataclasses.is_dataclass(command_type):
        names = {f.name for f in dataclasses.fields(command_type)}
        own = {
            name
            for name, hint in vars(command_type).get("__annotations__", {}).items()
            if "ClassVar" not in str(hint)
        }
        missing = own - names
        if missing:
            raise ImproperlyConfigured(
                f"{command_type.__qualname__} declares {sorted(missing)} but is not itself a "
                "dataclass: decorate it with @dataclass"
            )
    elif not (isinstance(command_type, type) and issubclass(command_type, pydantic.BaseModel)):
        raise ImproperlyConfigured(
            f"{command_type.__qualname__} must be a dataclass (derive from BackgroundCommand "
            "and add @dataclass) or a pydantic model"
        )
    fields = _field_names(command_type)
    if not {"id", "timestamp"} <= fields:
        raise ImproperlyConfigured(
            f"{command_type.__qualname__} must have 'id' and 'timestamp' fields "
            "(derive from BackgroundCommand to get both)"
        )


def _field_names(command_type: type) -> set[str]:
    if dataclasses.is_dataclass(command_type):
        return {f.name for f in dataclasses.fields(command_type)}
    return set(command_type.model_fields)  # pydantic model


@cache
def _adapter(command_type: type) -> pydantic.TypeAdapter:
    return pydantic.TypeAdapter(command_type)


def encode_command(command: Any, max_bytes: int | None = None) -> dict[str, Any]:
    """Return the JSON-ready payload of ``command``.

    Raises :class:`PayloadTooLarge` when its JSON text exceeds ``max_bytes``, so an
    oversize command fails at the caller instead of somewhere in the broker.
    """
    check_command_type(type(command))
    adapter = _adapter(type(command))
    try:
        payload = adapter.dump_python(command, mode="json")
        if max_bytes is not None:
            size = len(adapter.dump_json(command))  # compact JSON, measured in Rust
            if size > max_bytes:
                raise PayloadTooLarge(size, max_bytes, f"{command_name(type(command))} payload")
    except pydantic_core.PydanticSerializationError as exc:
        raise InvalidCommand(
            f"{type(command).__qualname__} has a field that cannot be encoded as JSON: {exc}"
        ) from None
    return payload


def decode_command(command_type: type, payload: Any, *, task_id: str | None = None) -> Any:
    """Validate a JSON payload into ``command_type``; raise :class:`InvalidCommand`.

    The error lists each invalid field and why, without echoing the values.

    ``task_id`` (the id of the message that carried the payload): the payload must
    have an ``id`` and it must be that one. A command's id is its task id, the id its
    events, result and status URL are found by; without this check a payload lacking
    ``id`` would get a fresh one that nothing knows.

    Unknown fields are ignored (a tolerant reader): during a rolling deploy an older
    worker receives commands with a field a newer publisher added. Each new set of
    unknown fields of a type is logged once per process, as a warning. A field the
    payload lacks takes its default (a newer worker reading an older payload); a
    required field it lacks is an error.
    """
    name = command_name(command_type)
    if not isinstance(payload, Mapping):
        raise InvalidCommand(
            f"payload for {name} must be a JSON object, got {type(payload).__name__}"
        )
    if task_id is not None:
        if "id" not in payload:
            raise InvalidCommand(
                f"invalid payload for {name}: id: missing; a command's payload carries its "
                f"id, which is the id of its task ({task_id})"
            )
        if payload["id"] != task_id:
            raise InvalidCommand(
                f"invalid payload for {name}: id: not the id of its task ({task_id}); a "
                "command's id is its task id, which its events and result are found by"
            )
    try:
        command = _adapter(command_type).validate_python(payload)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors(include_input=False, include_url=False)
        )
        raise InvalidCommand(
            f"invalid payload for {command_name(command_type)}: {problems}"
        ) from None
    except InvalidCommand:
        raise
    except (TypeError, ValueError) as exc:  # raised by a user's __post_init__
        raise InvalidCommand(f"invalid payload for {command_name(command_type)}: {exc}") from None
    known = _known_fields(command_type)
    if known is not None:
        unknown = [key for key in payload if key not in known]
        if unknown:
            _warn_unknown(name, unknown)
    return command


@cache
def _known_fields(command_type: type) -> frozenset[str] | None:
    """The payload keys ``command_type`` reads (names and aliases), or None when it
    keeps unknown ones itself (pydantic ``extra="allow"``)."""
    if dataclasses.is_dataclass(command_type):
        config = getattr(command_type, "__pydantic_config__", None) or {}
        if config.get("extra") == "allow":
            return None
        return frozenset(f.name for f in dataclasses.fields(command_type))
    if command_type.model_config.get("extra") == "allow":  # type: ignore[attr-defined]
        return None
    known = set()
    for field_name, info in command_type.model_fields.items():  # type: ignore[attr-defined]
        known.add(field_name)
        for alias in (info.alias, info.validation_alias):
            if isinstance(alias, str):
                known.add(alias)
    return frozenset(known)


#: (command name, unknown field names) already logged in this process (bounded).
_warned: set[tuple[str, tuple[str, ...]]] = set()
_WARNED_MAX = 1000


def _warn_unknown(name: str, unknown: list[str]) -> None:
    shown = tuple(sorted(str(key)[:64] for key in unknown[:20]))
    if (name, shown) in _warned:
        return
    if len(_warned) < _WARNED_MAX:
        _warned.add((name, shown))
    more = f" (and {len(unknown) - 20} more)" if len(unknown) > 20 else ""
    logger.warning(
        "celery-bgp: payload for %s has fields this process does not know, ignored: "
        "%s%s (a newer publisher? logged once per set of fields)",
        name, ", ".join(shown), more,
    )
