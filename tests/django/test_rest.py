"""REST polling: every status path, permissions, CSRF, bad input, the OpenAPI document."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from celery_bgp import CommandEvent, EventStatus
from tests.apps.rest_app import bgp

pytestmark = pytest.mark.django_db
ECHO = "tests.apps.commands.Echo"


@pytest.fixture
def staff(db):
    user = get_user_model().objects.create_user("ops", password="pw", is_staff=True)
    client = Client()
    client.force_login(user)
    return client


def post(client, name, body, **kw):
    return client.post(f"/bgp/commands/{name}", data=json.dumps(body),
                       content_type=kw.pop("content_type", "application/json"), **kw)


def test_post_then_poll_to_the_output(staff):
    response = post(staff, ECHO, {"text": "hello"})
    assert response.status_code == 202
    command_id = response.json()["id"]
    assert response["Location"].endswith(f"/bgp/commands/{command_id}/status")
    status = staff.get(response["Location"])
    assert status.status_code == 303  # eager: already processed
    assert status["Location"].endswith(f"/bgp/commands/{command_id}/output")
    output = staff.get(status["Location"])
    assert output.status_code == 200
    assert output.json() == {"id": command_id, "result": "hello"}


def test_status_while_dispatched_or_processing(staff):
    for status in (EventStatus.DISPATCHED, EventStatus.PROCESSING):
        command_id = f"pending-{status.value}"
        bgp.events.add(CommandEvent(command_id, status, datetime.now(timezone.utc),
                                    command_name=ECHO))
        response = staff.get(f"/bgp/commands/{command_id}/status")
        assert response.status_code == 200
        assert response["Retry-After"] == "10"
        assert response.json()["status"] == status.value
        assert staff.get(f"/bgp/commands/{command_id}/output").status_code == 404


def test_a_failed_command_is_a_problem(staff):
    response = post(staff, "tests.apps.commands.Fail", {"message": "no luck"})
    status = staff.get(response["Location"])
    assert status.status_code == 500
    assert status["Content-Type"] == "application/problem+json"
    problem = status.json()
    assert problem["type"] == "urn:celery-bgp:command-failed"
    assert problem["detail"] == "no luck"
    assert problem["exception_type"] == "tests.apps.commands.Boom"


def test_cancelled_and_unknown(staff):
    bgp.events.add(CommandEvent("gone", EventStatus.CANCELLED, datetime.now(timezone.utc),
                                reason="revoked"))
    response = staff.get("/bgp/commands/gone/status")
    assert (response.status_code, response.json()["detail"]) == (410, "revoked")
    response = staff.get("/bgp/commands/never-heard-of/status")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize(("body", "content_type", "code", "detail"), [
    ({"text": 5}, "application/json", 400, "text: Input should be a valid string"),
    ({}, "application/json", 400, "text: Field required"),
    ({"text": "x", "id": "mine"}, "application/json", 400, "id are set by the server"),
    (["not", "an", "object"], "application/json", 400, "JSON object"),
    ({"text": "x"}, "text/plain", 415, "application/json"),
    ({"text": "x" * 5000}, "application/json", 413, "limit of 4096 bytes"),
])
def test_bad_bodies_are_clear_problems(staff, body, content_type, code, detail):
    response = post(staff, ECHO, body, content_type=content_type)
    assert response.status_code == code
    assert detail in response.json()["detail"]


def test_invalid_json_and_unknown_command(staff):
    response = staff.post(f"/bgp/commands/{ECHO}", data="{nope",
                          content_type="application/json")
    assert response.status_code == 400
    assert post(staff, "no.such.Command", {}).status_code == 404


def test_authentication_and_permission(db):
    anonymous = Client()
    response = post(anonymous, ECHO, {"text": "x"})
    assert response.status_code == 401
    assert anonymous.get("/bgp/commands/x/status").status_code == 401
    user = get_user_model().objects.create_user("not-staff", password="pw")
    plain = Client()
    plain.force_login(user)
    assert post(plain, ECHO, {"text": "x"}).status_code == 403


def test_permission_rule_is_configurable(db, settings):
    settings.CELERY_BGP_REST_PERMISSION = "authenticated"
    user = get_user_model().objects.create_user("member", password="pw")
    client = Client()
    client.force_login(user)
    assert post(client, ECHO, {"text": "x"}).status_code == 202
    settings.CELERY_BGP_REST_PERMISSION = lambda request, name: name != ECHO
    assert post(client, ECHO, {"text": "x"}).status_code == 403


def test_only_listed_commands_are_exposed(staff, settings):
    settings.CELERY_BGP_REST_COMMANDS = ["tests.apps.commands.Greet"]
    assert post(staff, ECHO, {"text": "x"}).status_code == 404


def test_csrf_is_enforced_for_session_users(db):
    get_user_model().objects.create_user("csrf", password="pw", is_staff=True)
    client = Client(enforce_csrf_checks=True)
    client.login(username="csrf", password="pw")
    assert post(client, ECHO, {"text": "x"}).status_code == 403
    client.get("/admin/")  # a page with a form (the logout button) sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    response = post(client, ECHO, {"text": "x"}, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 202


def test_openapi_document_is_valid_and_lists_the_commands(staff):
    from openapi_spec_validator import validate

    document = staff.get("/bgp/openapi.json").json()
    validate(document)
    post_echo = document["paths"][f"/bgp/commands/{ECHO}"]["post"]
    schema = post_echo["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["text"]
    assert "id" not in schema["properties"]
    assert "/bgp/commands/{id}/status" in document["paths"]
