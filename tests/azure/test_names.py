"""Queue-name mapping: valid Azure names, stable, collision-free, prefix everywhere."""
from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from celery_bgp.exceptions import ImproperlyConfigured
from celery_bgp.transport import names

VALID = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}\Z")


def family(name: str, prefix: str = "") -> list[str]:
    base = names.azure_queue_name(name, prefix)
    return [names.level_queue(base, level) for level in names.LEVELS] + [
        names.poison_queue(base)]


@pytest.mark.parametrize("name", [
    "MyQueue", "my__queue", "ab", "a", "", "-x-", "celery", "a.b@c.pidbox", "x" * 200,
    "q-p0", "q-poison", "q-h0123456789abcdef", "UPPER", "é-unicode-ü", "a--b", "9lives",
    "abc\n", "0\n",
])
@pytest.mark.parametrize("prefix", ["", "prod-", "p1"])
def test_every_family_member_is_a_valid_azure_name(name, prefix):
    for physical in family(name, prefix):
        assert VALID.match(physical), physical
        assert len(physical) <= 63
        assert physical.startswith(prefix)


def test_plain_names_are_kept_readable():
    assert names.azure_queue_name("celery") == "celery"
    assert names.azure_queue_name("images-high", "prod-") == "prod-images-high"


def test_names_azure_rejects_are_hashed_distinctly():
    mapped = {n: names.azure_queue_name(n) for n in ("MyQueue", "myqueue", "my__queue",
                                                     "my-queue", "my.queue", "ab")}
    assert mapped["myqueue"] == "myqueue"
    assert mapped["my-queue"] == "my-queue"
    assert mapped["MyQueue"].startswith("myqueue-h")
    assert mapped["my__queue"].startswith("my-queue-h")
    assert mapped["ab"].startswith("ab-h")
    assert len(set(mapped.values())) == len(mapped)


def test_mapping_is_stable():
    # Pinned: a different result would strand messages in queues nobody reads any more.
    assert names.azure_queue_name("MyQueue") == "myqueue-h7c903cad4903e1f1"


def test_long_names_are_hashed_within_the_limit_and_distinct():
    a, b = "x" * 200, "x" * 199 + "y"
    assert names.azure_queue_name(a) != names.azure_queue_name(b)
    assert len(names.poison_queue(names.azure_queue_name(a, "prefix-"))) <= 63


def test_reserved_endings_cannot_collide_with_another_family():
    # "q" owns q-p0 and q-poison, so a queue literally named so must go elsewhere.
    owned = set(family("q"))
    for name in ("q-p0", "q-p4", "q-poison"):
        assert not set(family(name)) & owned


def test_priority_numbers_map_to_levels():
    assert [names.level_for_priority(n) for n in (9, 7, 5, 3, 1)] == [0, 1, 2, 3, 4]
    assert names.level_for_priority(None) == names.NORMAL_LEVEL
    assert names.level_for_priority(0) == names.NORMAL_LEVEL  # kombu's "no priority"
    from celery_bgp import Priority

    assert [names.level_for_priority(p.for_transport("azurequeue")) for p in Priority] == [
        0, 1, 2, 3, 4]


def test_control_queues_have_one_level():
    assert names.is_single_level("worker@host.celery.pidbox")
    assert names.is_single_level("celeryev.1234")
    assert not names.is_single_level("celery")


@pytest.mark.parametrize("prefix", ["UPPER", "a--b", "-x", "x" * 30, "a_b"])
def test_invalid_prefix_is_refused(prefix):
    with pytest.raises(ImproperlyConfigured, match="queue_name_prefix"):
        names.azure_queue_name("q", prefix)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(min_size=0, max_size=80), min_size=2, max_size=12, unique=True),
       st.sampled_from(["", "app-", "x1"]))
def test_families_never_overlap(queue_names, prefix):
    seen: dict[str, str] = {}
    for name in queue_names:
        for physical in family(name, prefix):
            assert VALID.match(physical)
            assert seen.setdefault(physical, name) == name, (physical, name, seen[physical])
