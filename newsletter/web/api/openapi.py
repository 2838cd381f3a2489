"""The OpenAPI 3.1 document of ``/api/v1/``, built from the route declarations, never by hand.

Each :class:`~newsletter.web.api.framework.Endpoint` gives its path, method, permission,
query, body and answer models; the schemas come from pydantic (``models_json_schema``,
one pass for every model, so shared models are one component each). A route added to
the API is in the document by construction, and ``tests/test_api.py`` walks the
document's paths to check who may call each one.
"""

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from newsletter.web.api.framework import CODES, PREFIX, Endpoint
from newsletter.web.api.models import ErrorBody

REF = "#/components/schemas/{model}"
# The path parameters every route may name, with their schemas.
PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "slug": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]*$", "maxLength": 63},
    "item_id": {"type": "integer", "minimum": 1},
    "edition_id": {"type": "integer", "minimum": 1},
    "source_name": {"type": "string", "maxLength": 200},
}
REASONS = {
    401: "Missing, unknown or revoked token",
    403: "Not allowed (the role, or a read-only token)",
    404: "No such group, record or route for this token's user",
    409: "The record's state or version does not allow it",
    413: "The body is too large",
    422: "The query or body is not valid",
    429: "Too many requests for this token this hour",
    502: "An outside service (relay, feed) failed",
    503: "The database is busy; try again (Retry-After)",
}


def document(endpoints: list[Endpoint], *, version: str) -> dict[str, Any]:
    """The whole document for ``endpoints``."""
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorBody, "serialization")]
    for endpoint in endpoints:
        if isinstance(endpoint.response, type):
            models.append((endpoint.response, "serialization"))
        if isinstance(endpoint.body, type):
            models.append((endpoint.body, "validation"))
        if endpoint.query is not None:
            models.append((endpoint.query, "validation"))
    models = list(dict.fromkeys(models))
    refs, definitions = models_json_schema(models, ref_template=REF)
    schemas = definitions.get("$defs", {})
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        operation = _operation(endpoint, refs, schemas)
        paths.setdefault(PREFIX + endpoint.path, {})[endpoint.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "newsletter API",
            "version": version,
            "description": "The editors' workspace as JSON: groups, items, editions, subscribers, sources. "
            "See docs/api.md. Error codes: " + ", ".join(CODES) + ".",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _operation(endpoint: Endpoint, refs: dict[Any, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": PATH_PARAMETERS[name]}
        for name in re.findall(r"{(\w+)}", endpoint.path)
    ]
    if endpoint.query is not None:
        query = schemas[_name(refs[endpoint.query, "validation"])]
        for name, schema in query.get("properties", {}).items():
            parameters.append(
                {"name": name, "in": "query", "required": name in query.get("required", []), "schema": schema}
            )
    if endpoint.creates:
        parameters.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                "description": "Send the same key again to get the first answer instead of a second record.",
            }
        )
    operation: dict[str, Any] = {
        "operationId": endpoint.name,
        "summary": endpoint.summary,
        "tags": [endpoint.tag] if endpoint.tag else [],
        "parameters": parameters,
        "responses": _responses(endpoint, refs),
        "x-permission": list(endpoint.permissions),
    }
    if isinstance(endpoint.body, type):
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[endpoint.body, "validation"]}},
        }
    elif isinstance(endpoint.body, str):
        operation["requestBody"] = {
            "required": True,
            "content": {endpoint.body: {"schema": {"type": "string"}}},
        }
    return operation


def _responses(endpoint: Endpoint, refs: dict[Any, Any]) -> dict[str, Any]:
    if isinstance(endpoint.response, type):
        content = {"application/json": {"schema": refs[endpoint.response, "serialization"]}}
    else:
        content = {endpoint.response: {"schema": {"type": "string"}}}
    answers: dict[str, Any] = {str(endpoint.status): {"description": "Done", "content": content}}
    error = {"application/json": {"schema": refs[ErrorBody, "serialization"]}}
    statuses = {401, 429, 503, *endpoint.errors}
    if endpoint.permissions or "{slug}" in endpoint.path:
        statuses |= {403, 404}
    if endpoint.writes:
        statuses.add(403)
    if endpoint.query is not None or endpoint.body is not None or re.search(r"{\w+}", endpoint.path):
        statuses |= {404, 422}
    if endpoint.body is not None:
        statuses.add(413)
    if endpoint.creates:
        statuses |= {409, 422}
    for status in sorted(statuses):
        answers[str(status)] = {"description": REASONS[status], "content": error}
    return answers


def _name(ref: dict[str, Any]) -> str:
    return str(ref["$ref"]).rsplit("/", 1)[-1]
