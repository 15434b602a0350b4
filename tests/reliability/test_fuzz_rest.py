"""REST bodies: whatever a client POSTs, the answer is 202 or an RFC 9457 problem (4xx).

Never a 500, never a traceback: hypothesis sends arbitrary bytes, arbitrary JSON and
objects that look almost like the command, through the real view and middleware.
"""
from __future__ import annotations

import json
import os

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.django_db
ECHO = "/bgp/commands/tests.apps.commands.Echo"
EXAMPLES = int(os.environ.get("BGP_HYPOTHESIS_EXAMPLES", "300"))
fuzz = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
near_commands = st.fixed_dictionaries({}, optional={
    "text": json_values, "id": json_values, "timestamp": json_values, "extra": json_values})


@pytest.fixture
def staff(db):
    user = get_user_model().objects.create_user("fuzz", password="pw", is_staff=True)
    client = Client()
    client.force_login(user)
    return client


def check(response) -> None:
    if response.status_code == 202:
        assert response.json()["status"] == "DISPATCHED"
        return
    assert 400 <= response.status_code < 500, response.content[:500]
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == response.status_code and problem["title"]


@fuzz
@given(body=st.binary(max_size=2000))
def test_any_bytes(staff, body):
    check(staff.post(ECHO, data=body, content_type="application/json"))


@fuzz
@given(body=json_values | near_commands)
def test_any_json(staff, body):
    check(staff.post(ECHO, data=json.dumps(body), content_type="application/json"))


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"text": ' + b"[" * 50_000 + b"}"])
def test_deeply_nested_json_is_a_problem_not_a_crash(staff, body):
    response = staff.post(ECHO, data=body, content_type="application/json")
    assert response.status_code == 400
    check(response)


NOTE = "/bgp/commands/tests.apps.rest_commands.Note"  # data: Any, a free-form field


def nested(kinds: list[bool], leaf) -> object:
    """A value nested ``len(kinds)`` containers deep: a list or an object at each level."""
    value = leaf
    for is_list in kinds:
        value = [value] if is_list else {"k": value}
    return value


#: pydantic refuses to serialize values nested about this deep ("Maximum serialization
#: depth exceeded"): 255 containers in the field, as of pydantic-core 2.x.
SERIALIZATION_DEPTH = 255


def expected(depth: int) -> set[int]:
    """202 well below the limit, 400 from just above it; either right at it."""
    if depth < SERIALIZATION_DEPTH - 5:
        return {202}
    if depth > SERIALIZATION_DEPTH + 5:
        return {400}
    return {202, 400}


@fuzz
@given(kinds=st.integers(200, 320).flatmap(
    lambda depth: st.lists(st.booleans(), min_size=depth, max_size=depth)),
       leaf=st.none() | st.integers() | st.text(max_size=5))
def test_free_form_fields_nested_around_the_limit(staff, kinds, leaf):
    """Around the serialization limit: 202 below it, a 400 problem from it on, never 500."""
    response = staff.post(NOTE, data=json.dumps({"data": nested(kinds, leaf)}),
                          content_type="application/json")
    check(response)
    assert response.status_code in expected(len(kinds)), (len(kinds), response.content[:300])
    if response.status_code == 400:
        assert "depth" in response.json()["detail"]


@pytest.mark.parametrize("depth", [250, 254, 255, 256, 300, 900])
def test_free_form_field_depths(staff, depth):
    response = staff.post(NOTE, data=json.dumps({"data": nested([True] * depth, None)}),
                          content_type="application/json")
    check(response)
    assert response.status_code in expected(depth)
