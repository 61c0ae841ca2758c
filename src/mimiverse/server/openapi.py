"""The OpenAPI document: every operation lists the errors it can answer, in the one error body.

Errors that follow from how the app is built are added to every operation here, so a route
added later is documented without doing anything:

- 400 where an operation takes parameters or a body (a validation failure is a 400
  ``invalid_json``, see ``app._explain``; FastAPI's default 422 is dropped);
- 401 where :func:`~mimiverse.server.auth.is_guarded` asks for credentials, 403 everywhere
  (scopes, roles, CSRF, and in ``auth=local`` a foreign Host);
- 404 where the path names something (``{id}``), 413 where there is a body, 429 on /api and
  /v1 (rate limits).

What only a route knows (an unknown model is a 404, a stale changeset a 409, a model that is
down a 503) it declares with ``responses=errors(…)``.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from mimiverse.server.auth import SESSION_COOKIE, is_guarded

STATUS_TEXT: dict[int, str] = {
    400: "Invalid request: the message names the fields to fix.",
    401: "No usable credentials: the message says how to authenticate.",
    403: "The credentials may not do this (scope, role, CSRF token or origin, host).",
    404: "No such thing (or one the caller may not see), or an unknown model.",
    409: "The target changed since it was read, or already exists; nothing was written.",
    413: "The request body is larger than max_body_bytes.",
    422: "Nothing to work on (e.g. empty prompt and suffix).",
    429: "Too many requests, or the month's quota is spent: retry after Retry-After seconds.",
    500: "The server failed; the message names the setting or install to fix.",
    502: "The model endpoint failed or broke off.",
    503: "No model endpoint (or service) is available for this right now.",
}
"""What each error status means here (the description OpenAPI shows)."""

RATE_LIMITED_PREFIXES = ("/api/", "/v1/")
SECURITY_SCHEMES: dict[str, Any] = {
    "apiToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token: `Authorization: Bearer mimi_<id>_<secret>`.",
    },
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": SESSION_COOKIE,
        "description": "The login session; writes also need the X-CSRF-Token header.",
    },
}
_SECURITY: list[dict[str, list[str]]] = [{"apiToken": []}, {"session": []}]


class ErrorDetail(BaseModel):
    """What went wrong and how to fix it; some errors add fields (``retry_after``, ``fields``)."""

    model_config = ConfigDict(extra="allow")
    message: str = Field(description="What went wrong and what to do about it.")
    type: str = Field(description="The kind of error, e.g. invalid_json, not_found.")
    code: int = Field(description="The HTTP status.")


class ErrorBody(BaseModel):
    """Every error response: ``{"error": {"message", "type", "code", …}}``."""

    error: ErrorDetail


SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "description": "One server-sent event.",
    "required": ["data"],
    "properties": {
        "event": {"type": "string", "description": "'message' unless named (e.g. 'error')."},
        "data": {"type": "string", "description": "A JSON document, or [DONE]."},
    },
}
"""The schema of each event of a ``text/event-stream`` answer."""


def streamed(description: str, *, json_too: bool = False) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route answering 200 with SSE (or JSON too, when ``json_too``)."""
    content: dict[str, Any] = {"text/event-stream": {"schema": SSE_EVENT}}
    if json_too:
        content = {"application/json": {"schema": {"type": "object"}}} | content
    return {200: {"description": description, "content": content}}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: these statuses answer with :class:`ErrorBody`."""
    return {s: {"model": ErrorBody, "description": STATUS_TEXT[s]} for s in statuses}


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` document every operation's errors (built on first use, so
    routers included after this call are covered too)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            document_errors(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document_errors(schema: dict[str, Any]) -> None:
    """Add the app-wide error responses and security requirements to every operation."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name, definition in _error_schemas().items():
        schemas.setdefault(name, definition)
    components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            _document(path, operation)
    if "HTTPValidationError" not in str(schema.get("paths")):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)


def _document(path: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    if "HTTPValidationError" in str(responses.get("422", "")):
        del responses["422"]
    parameters = operation.get("parameters", [])
    has_body = "requestBody" in operation
    wanted = [403]
    if parameters or has_body:
        wanted.append(400)
    if is_guarded(path):
        wanted.append(401)
        operation.setdefault("security", _SECURITY)
    if any(p.get("in") == "path" for p in parameters):
        wanted.append(404)
    if has_body:
        wanted.append(413)
    if path.startswith(RATE_LIMITED_PREFIXES):
        wanted.append(429)
    for status in sorted(wanted):
        responses.setdefault(str(status), _error_response(status))


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": STATUS_TEXT[status],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    if status == 429:
        response["headers"] = {
            "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}
        }
    return response


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods the document lists for a concrete ``path`` (a 405's ``Allow``)."""
    for template, operations in _templates(app).items():
        if template.fullmatch(path):
            return sorted(m.upper() for m in operations if m in _METHODS)
    return []


_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def _templates(app: FastAPI) -> dict[re.Pattern[str], dict[str, Any]]:
    templates: dict[re.Pattern[str], dict[str, Any]] | None = getattr(
        app.state, "openapi_templates", None
    )
    if templates is None:
        templates = {
            re.compile(re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(path))): operations
            for path, operations in app.openapi().get("paths", {}).items()
        }
        app.state.openapi_templates = templates
    return templates


def _error_schemas() -> dict[str, Any]:
    schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions: dict[str, Any] = schema.pop("$defs", {})
    definitions["ErrorBody"] = schema
    return definitions
