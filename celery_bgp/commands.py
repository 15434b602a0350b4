"""Typed commands: the base dataclass, command ids, names, and the JSON codec.

A command is the unit that travels: its fields are the parameters of one piece of
background work. It is encoded to plain JSON types on dispatch and validated back
into its registered type on the worker, so a message can never name a class to build.
"""
from __future__ import annotations

import base64
import dataclasses
import logging
import types
import typing
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from functools import cache
from typing import Any, ClassVar, Protocol, runtime_checkable

import pydantic
import pydantic_core

from .exceptions import InvalidCommand, NotACommand, PayloadTooLarge

logger = logging.getLogger("celery_bgp")

__all__ = [
    "BackgroundCommand",
    "Command",
    "check_command",
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
    """Raise :class:`NotACommand` (a ``TypeError``) unless ``command_type`` can be a command."""
    if isinstance(command_type, type) and command_type in _checked:
        return command_type
    _check(command_type)
    _checked.add(command_type)
    return command_type


def check_command(command: Any, call: str = "dispatch") -> None:
    """Raise :class:`NotACommand` unless ``command`` is a command instance.

    ``call`` names the method in the message (``dispatch() takes a command instance``).
    One set lookup for a type already seen: this runs on every dispatch.
    """
    if type(command) in _checked:
        return
    if isinstance(command, type):
        name = _name(command)
        raise NotACommand(
            f"{call}() takes a command instance: {name}(...), not the class {name}"
        )
    try:
        check_command_type(type(command))
    except NotACommand as exc:
        raise NotACommand(
            f"{call}() takes a command instance, got {_name(type(command))}: {exc}"
        ) from None


_checked: set[type] = set()


def _name(cls: type) -> str:
    """A class's qualified name without the ``f.<locals>.`` of classes defined in functions."""
    return cls.__qualname__.rpartition("<locals>.")[2]


def _check(command_type: Any) -> None:
    if not isinstance(command_type, type):
        if type(command_type) in _checked or isinstance(command_type, Command):
            raise NotACommand(
                f"a command type is a class: pass {_name(type(command_type))}, "
                "not an instance of it"
            )
        raise NotACommand(
            f"a command type must be a class, got {_name(type(command_type))} "
            "(derive one from BackgroundCommand and add @dataclass)"
        )
    if dataclasses.is_dataclass(command_type):
        names = {f.name for f in dataclasses.fields(command_type)}
        own = {
            name
            for name, hint in vars(command_type).get("__annotations__", {}).items()
            if "ClassVar" not in str(hint)
        }
        missing = own - names
        if missing:
            raise NotACommand(
                f"{_name(command_type)} declares {sorted(missing)} but is not itself a "
                "dataclass: decorate it with @dataclass"
            )
    elif not issubclass(command_type, pydantic.BaseModel):
        raise NotACommand(
            f"{_name(command_type)} is not a command type: it must be a dataclass "
            "(derive from BackgroundCommand and add @dataclass) or a pydantic model"
        )
    fields = _field_names(command_type)
    if not {"id", "timestamp"} <= fields:
        raise NotACommand(
            f"{_name(command_type)} is not a command type: it must have 'id' and "
            "'timestamp' fields (derive from BackgroundCommand to get both)"
        )


def _field_names(command_type: type) -> set[str]:
    if dataclasses.is_dataclass(command_type):
        return {f.name for f in dataclasses.fields(command_type)}
    return set(command_type.model_fields)  # pydantic model


@cache
def _adapter(command_type: type) -> pydantic.TypeAdapter:
    return pydantic.TypeAdapter(command_type)


def prepare(command_type: type) -> None:
    """Build ``command_type``'s validator and serializer now rather than on first use."""
    _adapter(command_type)


def encode_command(command: Any, max_bytes: int | None = None, *,
                   validate: bool = False) -> dict[str, Any]:
    """Return the JSON-ready payload of ``command``.

    Raises :class:`PayloadTooLarge` when its JSON text exceeds ``max_bytes``, so an
    oversize command fails at the caller instead of somewhere in the broker.

    ``validate`` (what ``dispatch`` and ``signature`` do): validate the payload back
    into the command's type, as the worker will (the same cached ``TypeAdapter``, the
    same call as :func:`decode_command`), and raise :class:`InvalidCommand` naming each
    field whose value does not fit, the value's type and the declared one, instead of
    sending what the worker would reject. Pydantic's serializer warnings are then not
    emitted: a value the worker would reject raises, one it accepts (``"12"`` for an
    ``int``) is sent as is.
    """
    command_type = type(command)
    check_command_type(command_type)
    adapter = _adapter(command_type)
    try:
        payload = adapter.dump_python(command, mode="json", warnings=not validate)
        if validate:
            _check_payload(command, payload, adapter)
        if max_bytes is not None:
            # the payload as compact JSON, measured in Rust (plain JSON types: no schema)
            size = len(pydantic_core.to_json(payload))
            if size > max_bytes:
                raise PayloadTooLarge(size, max_bytes, f"{command_name(command_type)} payload")
    except pydantic_core.PydanticSerializationError as exc:
        raise InvalidCommand(
            f"{command_type.__qualname__} has a field that cannot be encoded as JSON: {exc}"
        ) from None
    except ValueError as exc:  # pydantic's "Maximum serialization depth exceeded"
        if "depth" not in str(exc):
            raise
        raise InvalidCommand(
            f"{command_type.__qualname__} is nested too deeply to encode as JSON ({exc})"
        ) from None
    return payload


def _check_payload(command: Any, payload: dict[str, Any], adapter: pydantic.TypeAdapter) -> None:
    """Validate ``payload`` as the worker will; raise :class:`InvalidCommand` if it fails."""
    try:
        adapter.validate_python(payload)
    except pydantic.ValidationError as exc:
        problems = "; ".join(_misfit(command, err) for err in exc.errors(include_url=False))
        raise InvalidCommand(
            f"{_name(type(command))} has field values that do not fit their types: "
            f"{problems}; build the command with values of the declared types (its "
            "worker would reject it)"
        ) from None
    except (TypeError, ValueError) as exc:  # a user's __post_init__ (or InvalidCommand)
        raise InvalidCommand(
            f"{_name(type(command))} would be rejected by its worker: {exc}"
        ) from None


_MISSING = object()


def _misfit(command: Any, err: Any) -> str:
    """One validation error as ``field: got <type>, expected <type> (<why>)``, no values."""
    loc = err["loc"]
    where = ".".join(str(part) for part in loc) or "<root>"
    if not loc:
        return f"{where}: {err['msg']}"
    declared = _field_types(type(command)).get(str(loc[0]), "?")
    if err["type"] == "missing":
        return f"{where}: missing, expected {declared}"
    value = _value_at(command, loc)
    got = _type_name(err.get("input") if value is _MISSING else value)
    if len(loc) > 1:
        return f"{where}: got {got}, in {loc[0]}: {declared} ({err['msg']})"
    if got == declared:  # the type fits, a constraint does not
        return f"{where}: {err['msg']}"
    return f"{where}: got {got}, expected {declared} ({err['msg']})"


def _value_at(value: Any, loc: tuple[Any, ...]) -> Any:
    """The caller's value at a pydantic error location (``_MISSING`` if not found)."""
    try:
        for part in loc:
            if isinstance(value, Mapping) or (
                isinstance(part, int) and isinstance(value, (list, tuple))
            ):
                value = value[part]
            else:
                value = getattr(value, str(part))
    except (LookupError, AttributeError, TypeError):
        return _MISSING
    return value


def _type_name(value: Any) -> str:
    return "None" if value is None else type(value).__qualname__


@cache
def _field_types(command_type: type) -> dict[str, str]:
    """Field name -> declared type, as text (for error messages; computed on the first)."""
    if dataclasses.is_dataclass(command_type):
        try:
            hints = typing.get_type_hints(command_type)
        except Exception:  # an annotation that does not resolve: show its text
            hints = {}
        return {f.name: _type_text(hints.get(f.name, f.type))
                for f in dataclasses.fields(command_type)}
    return {name: _type_text(info.annotation)
            for name, info in command_type.model_fields.items()}  # type: ignore[attr-defined]


def _type_text(hint: Any) -> str:
    """``list[str]``, ``UUID | None``, ``Size`` ...: a type as its reader wrote it."""
    if isinstance(hint, str):
        return hint
    if hint is None or hint is type(None):
        return "None"
    if hint is Ellipsis:
        return "..."
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        return _type_text(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_text(arg) for arg in args)
    if origin is typing.Literal:
        return f"Literal[{', '.join(repr(arg) for arg in args)}]"
    if origin is not None:
        return f"{_type_text(origin)}[{', '.join(_type_text(arg) for arg in args)}]"
    if isinstance(hint, type):
        return hint.__qualname__
    return repr(hint).replace("typing.", "")


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
    if type(payload) is not dict and not isinstance(payload, Mapping):  # (the ABC check costs)
        raise InvalidCommand(f"payload for {command_name(command_type)} must be a JSON "
                             f"object, got {type(payload).__name__}")
    if task_id is not None:
        if "id" not in payload:
            raise InvalidCommand(
                f"invalid payload for {command_name(command_type)}: id: missing; a "
                f"command's payload carries its id, which is the id of its task ({task_id})"
            )
        if payload["id"] != task_id:
            raise InvalidCommand(
                f"invalid payload for {command_name(command_type)}: id: not the id of its "
                f"task ({task_id}); a command's id is its task id, which its events and "
                "result are found by"
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
            _warn_unknown(command_name(command_type), unknown)
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
