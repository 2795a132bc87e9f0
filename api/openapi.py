"""The OpenAPI document says what the API really answers.

FastAPI documents a route's success and its own ``responses``, with a 422 of a shape we
never send. Every error the API sends is ``application/problem+json``
(``core.errors.MasterlineError.to_problem``, ``api.app``'s handlers), and most of them
come from the same few places for every route: authentication (401), roles (403),
"visible or 404", validation (422), body caps (413), conflicts of a write (409), a busy
database (503), a full disk under the database (507, writes). They are added here,
once, after FastAPI built the document, instead of by hand on a hundred routes:

- every error response a route declares gets the problem+json content;
- every operation that needs a token gets 401 and 403; every operation 404, 422 and 503;
  every operation that writes 409 and 507; every one with a request body 413;
- the success response of a route that sends no body (204, HEAD) has no content; one
  with a ``format=csv`` choice also answers ``text/csv``.

``tests/api/test_schemathesis.py`` holds the API to this document.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

PROBLEM = "application/problem+json"

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details; some errors add fields (e.g. `errors`, "
    "`current_state`, `allowed_events`, `upload_offset`).",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
    },
    "required": ["type", "title", "status", "detail"],
    "additionalProperties": True,
}

_DESCRIPTIONS = {
    400: "Malformed request (e.g. a protocol header).",
    401: "Missing, unknown or revoked token.",
    403: "The token's role may not do this.",
    404: "Unknown, or another company's (client-bound tokens).",
    409: "Conflicts with the current state (duplicate, illegal lifecycle move…).",
    413: "Body over its size limit.",
    422: "Invalid input: `errors` says where.",
    429: "Too many requests of this kind in progress.",
    503: "Database busy or unreachable: retry.",
    507: "The disk under the database is full: free space, then retry.",
}

_WRITES = {"post", "put", "patch", "delete"}


def _problem_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def _offers_csv(op: dict[str, Any]) -> bool:
    """A ``format`` query parameter with a ``csv`` choice (the logistics listings)."""
    for p in op.get("parameters", []):
        if p.get("in") == "query" and p.get("name") == "format":
            schema = p.get("schema", {})
            choices = [*schema.get("enum", [])]
            for sub in schema.get("anyOf", []):
                choices += sub.get("enum", [])
            if "csv" in choices:
                return True
    return False


def _document_operation(method: str, op: dict[str, Any]) -> None:
    responses: dict[str, Any] = op.setdefault("responses", {})
    if _offers_csv(op) and "200" in responses:
        content = responses["200"].setdefault("content", {})
        content.setdefault("text/csv", {"schema": {"type": "string"}})
    wanted = {404, 422, 503}
    if op.get("security"):
        wanted |= {401, 403}
    if method in _WRITES:
        wanted |= {409, 507}
    if "requestBody" in op:
        wanted.add(413)
    for status in sorted(wanted):
        responses.setdefault(str(status), {"description": _DESCRIPTIONS[status]})
    for code, response in responses.items():
        if not code.isdigit():
            continue
        status = int(code)
        if status >= 400:
            described = response.get("description") or _DESCRIPTIONS.get(status, "Error.")
            if described == "Validation Error":  # FastAPI's own, of a shape we never send
                described = _DESCRIPTIONS[422]
            responses[code] = _problem_response(described)
        elif status == 204 or method == "head":
            response.pop("content", None)


def document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document, built once (replaces ``app.openapi``)."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    spec = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    # FastAPI's validation shapes are referenced by nothing once replaced.
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    for ops in spec.get("paths", {}).values():
        for method, op in ops.items():
            if isinstance(op, dict) and "responses" in op:
                _document_operation(method, op)
    app.openapi_schema = spec
    return spec


def install(app: FastAPI) -> None:
    app.openapi = lambda: document(app)  # type: ignore[method-assign]
