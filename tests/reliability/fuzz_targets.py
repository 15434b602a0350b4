"""Coverage-guided fuzz targets (atheris), one per decoder of untrusted input.

Run one: ``python -m tests.reliability.fuzz_targets <target> -runs=10000``. A target
may raise only the decoder's documented error; anything else is a crash that
atheris reports with the input that caused it.
"""
from __future__ import annotations

import base64
import bz2
import contextlib
import dataclasses
import json
import lzma
import sys
import zlib

import atheris
import celery  # noqa: F401  (dependencies load uninstrumented; only celery_bgp is traced)
import click
import kombu  # noqa: F401
import pydantic  # noqa: F401
import rich  # noqa: F401

with atheris.instrument_imports(include=["celery_bgp"]):
    from celery_bgp.cli.commands import parse_property
    from celery_bgp.commands import decode_command
    from celery_bgp.events.model import CommandEvent
    from celery_bgp.exceptions import InvalidCommand
    from celery_bgp.inflate import CompressionRefused, bounded
    from celery_bgp.jobs.memory import MemoryJobStore
    from celery_bgp.jobs.query import JobQuery, QueryError
    from celery_bgp.transport.codec import UndecodableMessage, decode_text
    from celery_bgp.worker import check_headers, check_message


from tests.reliability.fuzz_models import Order


def _json(data: bytes):
    try:
        return json.loads(data.decode("utf-8", "surrogatepass"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


def command_payload(data: bytes) -> None:
    value = _json(data)
    with contextlib.suppress(InvalidCommand):
        decode_command(Order, value if value is not None else data.decode("latin-1"))


@dataclasses.dataclass
class _Message:
    body: bytes
    content_type: str | None
    headers: dict


def worker_message(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    content_type = fdp.PickValueInList(["application/json", "application/x-yaml", None,
                                        "application/x-python-serialize", ""])
    headers = {"compression": "gzip"} if fdp.ConsumeBool() else {}
    assert check_message(_Message(fdp.ConsumeBytes(fdp.remaining_bytes()), content_type,
                                  headers)) in (None,) or True


#: Protocol-2 headers as Celery writes them; the fuzzer overrides some of them.
VALID_HEADERS = {"lang": "py", "task": "bgp.x.Order", "id": "f" * 32, "shadow": None,
                 "eta": None, "expires": None, "group": None, "group_index": None,
                 "retries": 0, "timelimit": [None, None], "root_id": "f" * 32,
                 "parent_id": None, "argsrepr": "", "kwargsrepr": "{}", "origin": "x",
                 "ignore_result": False, "stamped_headers": None, "stamps": {}}


def worker_headers(data: bytes) -> None:
    """Headers a queue writer chose: a reason (str) or None, never an exception."""
    value = _json(data)
    headers = {**VALID_HEADERS, **value} if isinstance(value, dict) else value
    for candidate in (headers, value):
        problem = check_headers(candidate)
        assert problem is None or isinstance(problem, str)


_CODECS = ["application/x-gzip", "application/x-bz2", "application/x-lzma"]
_CODEC_ERRORS = (CompressionRefused, zlib.error, OSError, lzma.LZMAError, EOFError)


def inflate_body(data: bytes) -> None:
    """A compressed body: inflated within the limit, or refused; never more."""
    fdp = atheris.FuzzedDataProvider(data)
    codec = fdp.PickValueInList(_CODECS)
    raw = fdp.ConsumeBytes(fdp.remaining_bytes())
    packed = {"application/x-gzip": zlib.compress, "application/x-bz2": bz2.compress,
              "application/x-lzma": lzma.compress}[codec](raw) if raw[:1] == b"\x00" else raw
    with contextlib.suppress(*_CODEC_ERRORS):
        assert len(bounded(codec, packed, 256)) <= 256


_store = MemoryJobStore()


def query_filter(data: bytes) -> None:
    value = _json(data)
    try:
        query = JobQuery.from_dict(value)
    except QueryError:
        return
    _store.count(query)


def cli_property(data: bytes) -> None:
    with contextlib.suppress(click.BadParameter):
        parse_property(data.decode("utf-8", "replace"))


def stored_event(data: bytes) -> None:
    with contextlib.suppress(ValueError, KeyError, TypeError):
        CommandEvent.from_json(data)


def transport_envelope(data: bytes) -> None:
    """Queue text of the Azure transport: base64 of a JSON envelope, or anything."""
    fdp = atheris.FuzzedDataProvider(data)
    raw = fdp.ConsumeBytes(fdp.remaining_bytes())
    text = base64.b64encode(raw).decode() if raw[:1] == b"{" else raw
    with contextlib.suppress(UndecodableMessage):
        decode_text(text)


TARGETS = {f.__name__: f for f in (command_payload, worker_message, worker_headers,
                                   inflate_body, query_filter,
                                   cli_property, stored_event, transport_envelope)}

#: Seed inputs that reach deep paths quickly.
SEEDS = {
    "command_payload": [b'{"id": "x", "sku": "A", "quantity": 2, "size": "l", "tags": ["a"],'
                        b' "inner": {"name": "n", "weight": 1.5}, "ref": null}'],
    "worker_message": [b"\x00[[{\"a\": 1}], {}, {}]", b"\x00" + b"[" * 100_000],
    "worker_headers": [b'{"eta": "2026-01-01T00:00:00+00:00", "timelimit": [1, 2.5]}',
                       b'{"id": 5}', b'{"task": null}'],
    "inflate_body": [b"\x00\x00" + b"a" * 300, b"\x01x\x9c\xcbH\xcd\xc9\xc9\x07\x00"],
    "query_filter": [b'{"where": {"and": [{"field": "state", "value": "Failed"},'
                     b' {"property": "amount", "op": "gt", "value": 3}]},'
                     b' "order_by": ["-created"], "limit": 5}'],
    "cli_property": [b"amount>=10", b"tenant~ac*"],
    "transport_envelope": [b'{"body": "e30=", "properties": {"delivery_tag": "x"},'
                           b' "headers": {"id": "1"}}', b"[" * 5000],
    "stored_event": [b'{"command_id": "c", "status": "ERROR",'
                     b' "timestamp": "2026-01-01T00:00:00+00:00", "error": {"type": "E",'
                     b' "message": "m"}}'],
}


def main() -> None:
    name = sys.argv.pop(1)
    target = TARGETS[name]

    def one(data: bytes) -> None:
        target(data)

    atheris.Setup(sys.argv, one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
