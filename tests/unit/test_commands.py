"""Commands: ids, timestamps, names, and the JSON codec's errors."""
from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timedelta, timezone
from enum import Enum
from uuid import UUID

import pydantic
import pytest

from celery_bgp import (
    BackgroundCommand,
    ImproperlyConfigured,
    InvalidCommand,
    NotACommand,
    PayloadTooLarge,
)
from celery_bgp.commands import (
    check_command_type,
    command_name,
    decode_command,
    encode_command,
    new_command_id,
)


class Size(Enum):
    SMALL = "s"
    LARGE = "l"


@dataclasses.dataclass
class Resize(BackgroundCommand):
    url: str
    size: Size = Size.SMALL
    ref: UUID | None = None
    tags: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Pinned(BackgroundCommand):
    __command_name__ = "images.pinned"
    n: int


@dataclasses.dataclass
class NotDerived:
    """A command that provides id and timestamp without the base class."""

    id: str
    timestamp: datetime
    text: str


class AModel(pydantic.BaseModel):
    id: str
    timestamp: datetime
    count: int


def test_ids_are_short_url_safe_and_unique():
    ids = {new_command_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", i) for i in ids)
    # 10,000 ids: about 156 would start with "-" (read as an option on a command line)
    assert not any(i.startswith("-") for i in ids)


def test_defaults_fill_id_and_aware_utc_timestamp():
    command = Resize("http://x")
    assert len(command.id) == 22
    assert command.timestamp.tzinfo is not None
    assert command.timestamp.utcoffset() == timedelta(0)
    assert abs(datetime.now(timezone.utc) - command.timestamp) < timedelta(seconds=5)


def test_positional_fields_work_after_the_base_defaults():
    assert Resize("http://x").url == "http://x"


def test_naive_timestamp_is_refused_and_offsets_become_utc():
    with pytest.raises(InvalidCommand, match="timezone-aware"):
        Resize("u", timestamp=datetime(2024, 1, 1))
    plus2 = timezone(timedelta(hours=2))
    assert Resize("u", timestamp=datetime(2024, 1, 1, 2, tzinfo=plus2)).timestamp == datetime(
        2024, 1, 1, tzinfo=timezone.utc
    )


def test_names():
    assert command_name(Resize) == f"{__name__}.Resize"
    assert command_name(Pinned) == "images.pinned"


def test_round_trip_keeps_types():
    command = Resize("u", size=Size.LARGE, ref=UUID(int=7), tags=["a"])
    payload = encode_command(command)
    assert payload["size"] == "l"
    assert payload["ref"] == str(UUID(int=7))
    assert isinstance(payload["timestamp"], str)
    assert decode_command(Resize, payload) == command


def test_classes_that_do_not_derive_are_accepted():
    now = datetime.now(timezone.utc)
    plain = NotDerived(id="abc", timestamp=now, text="t")
    assert decode_command(NotDerived, encode_command(plain)) == plain
    model = AModel(id="m", timestamp=now, count=3)
    assert decode_command(AModel, encode_command(model)) == model


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"id": "x"}, "url: Field required"),
        ({"id": "x", "url": 5}, "url: Input should be a valid string"),
        ({"id": "x", "url": "u", "size": "huge"}, "size: Input should be 's' or 'l'"),
        ({"id": "x", "url": "u", "timestamp": "yesterday"}, "timestamp: Input should be"),
        ({"id": "x", "url": "u", "timestamp": "2024-01-01T00:00:00"}, "timezone-aware"),
        (["not", "an", "object"], "must be a JSON object, got list"),
        (None, "must be a JSON object, got NoneType"),
    ],
)
def test_decode_errors_are_clear(payload, message):
    with pytest.raises(InvalidCommand, match=re.escape(message)):
        decode_command(Resize, payload)


def test_decode_errors_do_not_echo_values():
    with pytest.raises(InvalidCommand) as info:
        decode_command(Resize, {"id": "x", "url": 12345678987654321})
    assert "12345678987654321" not in str(info.value)


def test_oversize_payload_names_size_and_limit():
    with pytest.raises(PayloadTooLarge) as info:
        encode_command(Resize("u" * 5000), max_bytes=1024)
    assert info.value.limit == 1024
    assert info.value.size > 5000
    assert "1024 bytes" in str(info.value)


def test_unencodable_field_is_a_clear_error():
    @dataclasses.dataclass
    class Odd(BackgroundCommand):
        thing: object

    with pytest.raises(InvalidCommand, match="cannot be encoded as JSON"):
        encode_command(Odd(thing=object()))


def test_command_type_checks():
    """Not a command type: a TypeError (NotACommand), no longer ImproperlyConfigured."""
    assert issubclass(NotACommand, TypeError)
    assert not issubclass(NotACommand, ImproperlyConfigured)

    class Bare:
        pass

    with pytest.raises(NotACommand, match="must be a dataclass"):
        check_command_type(Bare)

    @dataclasses.dataclass
    class NoIds:
        x: int

    with pytest.raises(NotACommand, match="'id' and 'timestamp'"):
        check_command_type(NoIds)

    class Forgot(BackgroundCommand):  # no @dataclass
        url: str

    with pytest.raises(NotACommand, match="decorate it with @dataclass"):
        check_command_type(Forgot)
