"""The OpenAPI 3.1 description of the REST polling API, built from the command types."""
from __future__ import annotations

from typing import Any

import pydantic
from django.http import HttpRequest, JsonResponse
from django.urls import reverse

from ... import __version__
from .rest import SERVER_FIELDS, get_bgp, guarded

__all__ = ["openapi_document", "openapi_view"]

_PROBLEM = {"$ref": "#/components/schemas/Problem"}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/problem+json": {"schema": _PROBLEM}}}


def command_schema(command_type: type) -> dict[str, Any]:
    """The JSON schema of a command body: its fields, without the server-set ones."""
    schema = pydantic.TypeAdapter(command_type).json_schema(ref_template="#/$defs/{model}")
    for field in SERVER_FIELDS:
        schema.get("properties", {}).pop(field, None)
        if field in schema.get("required", []):
            schema["required"].remove(field)
    return schema


def openapi_document(bgp: Any, base: str) -> dict[str, Any]:
    """The document for every command type registered on ``bgp``."""
    bgp.discover()
    paths: dict[str, Any] = {}
    status = {"type": "object", "properties": {
        "id": {"type": "string"}, "status": {"type": "string"},
        "status_url": {"type": "string", "format": "uri"}}}
    for name, command_type in sorted(bgp.registry.types().items()):
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
                "400": _problem("Invalid command"), "401": _problem("Not logged in"),
                "403": _problem("Not allowed"), "413": _problem("Command too large"),
                "415": _problem("Not JSON"),
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


@guarded
def openapi_view(request: HttpRequest) -> JsonResponse:
    """``GET openapi.json``."""
    base = reverse("celery_bgp:openapi").rsplit("openapi.json", 1)[0]
    return JsonResponse(openapi_document(get_bgp(), base))
