"""Property-based tests (hypothesis) of every decoder of untrusted input: no crash, no
hang, a clear error. Structured inputs, BGP_HYPOTHESIS_EXAMPLES per property (300);
the 10,000-case coverage-guided runs are in test_atheris.py."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import uuid
import zlib
from datetime import datetime, timedelta, timezone

import click
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from celery_bgp import CommandEvent, InvalidCommand
from celery_bgp.cli.commands import parse_property
from celery_bgp.commands import decode_command, encode_command
from celery_bgp.inflate import CompressionRefused, bounded
from celery_bgp.jobs.memory import MemoryJobStore
from celery_bgp.jobs.query import JobQuery, QueryError
from celery_bgp.worker import check_headers, check_message
from tests.reliability.fuzz_models import Inner, Order, Size

EXAMPLES = int(os.environ.get("BGP_HYPOTHESIS_EXAMPLES", "300"))
fuzz = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])



json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10),
                                                                        children, max_size=4),
    max_leaves=10,
)
order_like = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values | st.text(max_size=30),
        "timestamp": json_values | st.datetimes(timezones=st.just(timezone.utc)).map(
            datetime.isoformat),
        "sku": json_values, "quantity": json_values, "size": json_values | st.sampled_from(
            ["s", "l"]),
        "ref": json_values | st.uuids().map(str), "tags": json_values,
        "inner": json_values | st.fixed_dictionaries({"name": json_values,
                                                      "weight": json_values}),
    },
)


@fuzz
@given(payload=json_values | order_like)
def test_command_payloads_decode_or_fail_clearly(payload):
    try:
        command = decode_command(Order, payload)
    except InvalidCommand as exc:
        assert str(exc).startswith(("invalid payload for", "payload for"))
    else:
        assert isinstance(command, Order)
        assert decode_command(Order, encode_command(command)) == command


@fuzz
@given(command=st.builds(
    Order, sku=st.text(), quantity=st.integers(), size=st.sampled_from(Size),
    ref=st.none() | st.uuids(), tags=st.lists(st.text(), max_size=3),
    inner=st.none() | st.builds(Inner, st.text(), st.floats(allow_nan=False,
                                                            allow_infinity=False)),
))
def test_commands_round_trip_through_json(command):
    wire = json.loads(json.dumps(encode_command(command)))
    assert decode_command(Order, wire) == command


@dataclasses.dataclass
class Message:
    body: bytes
    content_type: str | None
    headers: dict


@fuzz
@given(
    body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()),
    content_type=st.none() | st.sampled_from(["application/json", "application/x-yaml",
                                              "application/x-python-serialize"]) | st.text(),
    headers=st.dictionaries(st.text(max_size=10), json_values, max_size=3),
)
def test_worker_message_check_never_raises(body, content_type, headers):
    problem = check_message(Message(body, content_type, headers))
    assert problem is None or isinstance(problem, str)


query_fields = st.sampled_from(["id", "name", "queue", "state", "past_state", "priority",
                                "created", "modified", "environment", "locked_by", "nope",
                                "id; DROP TABLE celery_bgp_job"])
query_ops = st.sampled_from(["eq", "lt", "gt", "lte", "gte", "like", "in", "ne", "raw"])
conditions = st.fixed_dictionaries({"field": query_fields, "op": query_ops,
                                    "value": json_values}) | st.fixed_dictionaries(
    {"property": st.text(max_size=20), "op": query_ops, "value": json_values})
query_nodes = st.recursive(
    conditions | json_values,
    lambda children: st.dictionaries(st.sampled_from(["and", "or"]), st.lists(children,
                                                                              max_size=3),
                                     min_size=1, max_size=1),
    max_leaves=8,
)
queries = st.fixed_dictionaries({}, optional={
    "where": query_nodes, "order_by": st.lists(st.text(max_size=12), max_size=2) | json_values,
    "limit": json_values, "offset": json_values, "environment": json_values,
}) | json_values

_store = MemoryJobStore()


@fuzz
@given(data=queries)
def test_query_filters_parse_or_fail_clearly(data):
    try:
        query = JobQuery.from_dict(data)
    except QueryError:
        return
    # A query that validates runs against a store without error.
    assert _store.count(query) == 0
    assert _store.search(query) == []


@fuzz
@given(text=st.text(max_size=40))
def test_cli_property_filters_parse_or_fail_clearly(text):
    with contextlib.suppress(click.BadParameter):
        parse_property(text)


@fuzz
@given(text=st.text(max_size=200) | json_values.map(json.dumps))
def test_stored_event_text_decodes_or_raises_a_value_error(text):
    with contextlib.suppress(ValueError, KeyError, TypeError):
        CommandEvent.from_json(text)


# -- message headers (celery_bgp.worker.check_headers) -------------------------------------

HEADER_EXAMPLES = min(EXAMPLES, 200)
headers_fuzz = settings(fuzz, max_examples=HEADER_EXAMPLES)
header_names = st.sampled_from(["task", "id", "root_id", "parent_id", "group", "shadow",
                                "argsrepr", "kwargsrepr", "eta", "expires", "retries",
                                "timelimit", "group_index", "stamped_headers", "stamps",
                                "lang", "origin", "ignore_result"])
header_values = json_values | st.datetimes().map(datetime.isoformat) | st.lists(
    st.none() | st.integers() | st.floats(), min_size=0, max_size=3)


def _celery_headers(**options):
    from celery import Celery

    app = Celery("fuzz-headers", set_as_current=False)
    task_id = uuid.uuid4().hex
    return app.amqp.as_task_v2(task_id, "bgp.tests.Order", args=({"id": task_id},),
                               **options).headers


@headers_fuzz
@given(changes=st.dictionaries(header_names, header_values, max_size=4),
       drop=st.sets(header_names, max_size=2))
def test_header_check_names_a_reason_or_passes_never_raises(changes, drop):
    headers = {**_celery_headers(), **changes}
    for name in drop:
        headers.pop(name, None)
    problem = check_headers(headers)
    assert problem is None or isinstance(problem, str)
    if problem is None:  # what passes is what Celery's request can read
        assert isinstance(headers["id"], str) and isinstance(headers["task"], str)


@headers_fuzz
@given(countdown=st.none() | st.floats(min_value=0, max_value=10 ** 6),
       expires=st.none() | st.floats(min_value=1, max_value=10 ** 6),
       time_limit=st.none() | st.integers(min_value=1, max_value=3600),
       soft_time_limit=st.none() | st.floats(min_value=0.5, max_value=3600),
       retries=st.integers(min_value=0, max_value=100))
def test_headers_celery_writes_always_pass(countdown, expires, time_limit,
                                           soft_time_limit, retries):
    now = datetime.now(timezone.utc)
    headers = _celery_headers(
        eta=None if countdown is None else now + timedelta(seconds=countdown),
        expires=None if expires is None else now + timedelta(seconds=expires),
        time_limit=time_limit, soft_time_limit=soft_time_limit, retries=retries)
    assert check_headers(headers) is None, headers


@headers_fuzz
@given(data=st.binary(max_size=400), packed=st.booleans(),
       codec=st.sampled_from(["application/x-gzip", "application/x-bz2",
                              "application/x-lzma"]))
def test_bounded_decompression_inflates_within_the_limit_or_refuses(data, packed, codec):
    import bz2
    import lzma

    limit = 256
    body = {"application/x-gzip": zlib.compress, "application/x-bz2": bz2.compress,
            "application/x-lzma": lzma.compress}[codec](data) if packed else data
    try:
        out = bounded(codec, body, limit)
    except CompressionRefused:
        assert len(data) > limit or not packed
        return
    except (zlib.error, OSError, lzma.LZMAError, EOFError):
        assert not packed  # only garbage fails to decode
        return
    assert len(out) <= limit
    if packed:
        assert out == data
