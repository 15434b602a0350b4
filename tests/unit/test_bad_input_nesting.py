"""Deeply nested JSON gets the same clear refusal everywhere JSON from outside is read."""
from __future__ import annotations

import pytest

from celery_bgp.events.model import CommandEvent
from celery_bgp.transport.poison import _parse

DEEP = "[" * 100_000


def test_a_stored_event_nested_too_deeply_is_a_value_error():
    with pytest.raises(ValueError, match="nested too deeply"):
        CommandEvent.from_json(DEEP)


def test_a_poison_record_nested_too_deeply_is_not_a_poison_record():
    assert _parse("{" + '"a":' * 50_000 + "1" + "}" * 50_000) is None
