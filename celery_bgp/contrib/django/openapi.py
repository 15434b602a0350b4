"""The OpenAPI 3.1 description of the REST polling API, built from the command types.

It lists the command types the API accepts: registered, in ``CELERY_BGP_REST_COMMANDS``
when that is set, and allowed to the requesting user by ``CELERY_BGP_REST_PERMISSION``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pydantic
from django.http import HttpRequest, JsonResponse
from django.urls import reverse

from ... import __version__
from .rest import SERVER_FIELDS, get_bgp, listed, may_post, rest_view

__all__ = ["openapi_document", "openapi_view"]

_PROBLEM = {"$ref": "#/components/schemas/Problem"}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/problem+json": {"schema": _PROBLEM}}}


def _refusals(method: str) -> dict[str, Any]:
    """What every operation may answer before it looks at the request (all problems)."""
    unauthenticated = _problem("Not logged in")
    unauthenticated["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    return {"401": unauthenticated,
            "403": _problem("Not allowed by CELERY_BGP_REST_PERMISSION"
                            + (", or the CSRF check failed (send X-CSRFToken)"
                               if method == "post" else "")),
            "405": _problem("Method not allowed (see the Allow header)")}


def command_schema(command_type: type) -> dict[str, Any]:
    """The JSON schema of a command body: its fields, without the server-set ones."""
    schema = pydantic.TypeAdapter(command_type).json_schema(ref_template="#/$defs/{model}")
    for field in SERVER_FIELDS:
        schema.get("properties", {}).pop(field, None)
        if field in schema.get("required", []):
            schema["required"].remove(field)
    return schema


def openapi_document(bgp: Any, base: str,
                     exposed: Callable[[str], bool] = listed) -> dict[str, Any]:
    """The document for the command types registered on ``bgp`` that ``exposed`` accepts
    (by default those in ``CELERY_BGP_REST_COMMANDS``)."""
    bgp.discover()
    paths: dict[str, Any] = {}
    status = {"type": "object", "properties": {
        "id": {"type": "string"}, "status": {"type": "string"},
        "status_url": {"type": "string", "format": "uri"}}}
    for name, command_type in sorted(bgp.registry.types().items()):
        if not exposed(name):
            continue
        paths[f"{base}commands/{name}"] = {"post": {
            "operationId": f"dispatch_{name.replace('.', '_')}",
            "summary": f"Dispatch {name}",
            "description": (command_type.__doc__ or "").strip() or None,
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": command_schema(command_type)}}},
            "responses": {
                "202": {"description": "Accepted; poll the Location header",
                        "headers": {"Location": {"schema": {"type": "string"}}},
                        "content": {"application/json": {"schema": status}}},
                "400": _problem("Invalid command (fields, JSON, nesting)"),
                **_refusals("post"), "404": _problem("Unknown command type"),
                "413": _problem("Command too large"), "415": _problem("Not JSON"),
            },
        }}
    paths[f"{base}commands/{{id}}/status"] = {"get": {
        "operationId": "command_status", "summary": "Where a command is",
        "parameters": [{"name": "id", "in": "path", "required": True,
                        "schema": {"type": "string"}}],
        "responses": {
            "200": {"description": "Dispatched or processing; retry after Retry-After",
                    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                    "content": {"application/json": {"schema": status}}},
            "303": {"description": "Processed; the output is at Location"},
            **_refusals("get"),
            "404": _problem("Unknown command id"),
            "410": _problem("Cancelled"),
            "500": _problem("The command failed"),
        },
    }}
    paths[f"{base}commands/{{id}}/output"] = {"get": {
        "operationId": "command_output", "summary": "The handler's result",
        "parameters": [{"name": "id", "in": "path", "required": True,
                        "schema": {"type": "string"}}],
        "responses": {"200": {"description": "The result", "content": {
            "application/json": {"schema": {"type": "object"}}}},
            **_refusals("get"),
            "404": _problem("Not processed, or no result backend")},
    }}
    return {
        "openapi": "3.1.0",
        "info": {"title": "celery-bgp commands", "version": __version__},
        "paths": paths,
        "components": {"schemas": {"Problem": {
            "type": "object", "description": "RFC 9457 problem details",
            "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                           "status": {"type": "integer"}, "detail": {"type": "string"}}}}},
    }


@rest_view("GET")
def openapi_view(request: HttpRequest) -> JsonResponse:
    """``GET openapi.json``: the command types this user may POST."""
    base = reverse("celery_bgp:openapi").rsplit("openapi.json", 1)[0]
    return JsonResponse(openapi_document(get_bgp(), base,
                                         lambda name: may_post(request, name)))
