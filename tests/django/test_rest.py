"""REST polling: every status path, permissions, CSRF, bad input, the OpenAPI document.

Every refusal (401, 403, 405, 413) is an RFC 9457 problem, never an HTML page or a
redirect."""
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


def is_problem(response, status: int) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["title"]
    return body


URLS = [("post", f"/bgp/commands/{ECHO}"), ("get", "/bgp/commands/x/status"),
        ("get", "/bgp/commands/x/output"), ("get", "/bgp/openapi.json")]


def send(client, method, url, **kw):
    if method == "post":
        return post(client, url.rsplit("/", 1)[1], {"text": "x"}, **kw)
    return client.get(url, **kw)


@pytest.mark.parametrize(("method", "url"), URLS)
def test_authentication_and_permission(db, method, url):
    anonymous = Client(enforce_csrf_checks=True)  # 401 first: no token needed to learn that
    response = send(anonymous, method, url)
    is_problem(response, 401)
    assert response["WWW-Authenticate"]
    user = get_user_model().objects.create_user("not-staff", password="pw")
    plain = Client()
    plain.force_login(user)
    assert is_problem(send(plain, method, url), 403)["title"] == "Permission denied"


@pytest.mark.parametrize(("method", "url"), URLS)
def test_a_wrong_method_is_a_problem(staff, method, url):
    other = staff.get if method == "post" else staff.delete
    response = other(url)
    is_problem(response, 405)
    assert response["Allow"] == method.upper()


def test_login_required_middleware_does_not_redirect(db, settings):
    from django.contrib.auth import middleware

    if not hasattr(middleware, "LoginRequiredMiddleware"):
        pytest.skip("Django < 5.1 has no LoginRequiredMiddleware")
    settings.MIDDLEWARE = [*settings.MIDDLEWARE,
                           "django.contrib.auth.middleware.LoginRequiredMiddleware"]
    for method, url in URLS:
        is_problem(send(Client(), method, url), 401)
    assert Client().get("/admin/celery_bgp/job/").status_code == 302  # others still redirect


def test_a_body_above_django_upload_limit_is_a_problem(staff, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = is_problem(post(staff, ECHO, {"text": "x" * 2000}), 413)
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in body["detail"]


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
    refused = is_problem(post(client, ECHO, {"text": "x"}), 403)
    assert refused["type"] == "urn:celery-bgp:csrf-failed"
    assert "CSRF cookie not set" in refused["detail"] and "X-CSRFToken" in refused["detail"]
    client.get("/admin/")  # a page with a form (the logout button) sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    refused = is_problem(post(client, ECHO, {"text": "x"}), 403)
    assert "CSRF token missing" in refused["detail"]
    refused = is_problem(post(client, ECHO, {"text": "x"}, HTTP_X_CSRFTOKEN="x" * 32), 403)
    assert "CSRF token" in refused["detail"]
    refused = is_problem(post(client, ECHO, {"text": "x"}, HTTP_X_CSRFTOKEN=token,
                              HTTP_ORIGIN="https://evil.example"), 403)
    assert "Origin checking failed" in refused["detail"]
    response = post(client, ECHO, {"text": "x"}, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 202
    assert client.get(response["Location"]).status_code == 303  # GET needs no token


def test_csrf_failure_is_logged_like_django_does(db, caplog):
    get_user_model().objects.create_user("csrf-log", password="pw", is_staff=True)
    client = Client(enforce_csrf_checks=True)
    client.login(username="csrf-log", password="pw")
    with caplog.at_level("WARNING", logger="django.security.csrf"):
        is_problem(post(client, ECHO, {"text": "x"}), 403)
    assert "Forbidden (CSRF cookie not set.)" in caplog.text


def test_without_the_csrf_middleware_there_is_no_csrf_check(db, settings):
    """As before: the project that removed CsrfViewMiddleware opted out everywhere."""
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "csrf" not in m.lower()]
    get_user_model().objects.create_user("no-csrf", password="pw", is_staff=True)
    client = Client(enforce_csrf_checks=True)
    client.login(username="no-csrf", password="pw")
    assert post(client, ECHO, {"text": "x"}).status_code == 202


def test_openapi_document_is_valid_and_lists_the_commands(staff):
    from openapi_spec_validator import validate

    document = staff.get("/bgp/openapi.json").json()
    validate(document)
    post_echo = document["paths"][f"/bgp/commands/{ECHO}"]["post"]
    schema = post_echo["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["text"]
    assert "id" not in schema["properties"]
    assert "/bgp/commands/{id}/status" in document["paths"]


def test_openapi_documents_every_refusal_as_a_problem(staff):
    document = staff.get("/bgp/openapi.json").json()
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for code in ("401", "403", "405"):
                content = operation["responses"][code]["content"]
                assert content == {"application/problem+json": {"schema": problem_ref}}, (
                    path, method, code)
            if method == "post":
                assert "CSRF" in operation["responses"]["403"]["description"]
                assert {"400", "404", "413", "415"} <= set(operation["responses"])


def test_openapi_lists_only_the_commands_the_api_accepts(staff, settings):
    from openapi_spec_validator import validate

    def commands(client=staff):
        document = client.get("/bgp/openapi.json").json()
        validate(document)
        return sorted(p.rsplit("/", 1)[1] for p in document["paths"]
                      if "{id}" not in p)

    assert ECHO in commands() and "tests.apps.commands.Greet" in commands()
    settings.CELERY_BGP_REST_COMMANDS = ["tests.apps.commands.Greet", "not.Registered"]
    assert commands() == ["tests.apps.commands.Greet"]
    assert post(staff, ECHO, {"text": "x"}).status_code == 404  # as the document says
    settings.CELERY_BGP_REST_COMMANDS = "__all__"
    settings.CELERY_BGP_REST_PERMISSION = lambda request, name: name != ECHO
    listed = commands()
    assert ECHO not in listed and "tests.apps.commands.Greet" in listed
    assert post(staff, ECHO, {"text": "x"}).status_code == 403
