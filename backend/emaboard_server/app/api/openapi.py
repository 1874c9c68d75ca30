"""The OpenAPI schema: the ingest body's components, the token as security schemes, and the
one error shape on every status an ``/api`` route can answer."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from emaboard_server.app.api.routes import metrics
from emaboard_server.app.schemas import ErrorResponse

OPEN_OPERATIONS = frozenset({"/api/health"})
SECURITY_SCHEMES = {
    "bearerToken": {"type": "http", "scheme": "bearer",
                    "description": "The server's EMABOARD_TOKEN, when it has one."},
    "queryToken": {"type": "apiKey", "in": "query", "name": "token",
                   "description": "The same token as ?token= (browser downloads, websockets)."},
}


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


# Statuses every /api route may answer before or around its own work (api/hosts.py,
# api/auth.py, api/limits.py, validation), in the one error shape.
API_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("Invalid Host header, or a malformed upload"),
    401: _error("Invalid or missing token (when the server has one)"),
    403: _error("Cross-origin request refused"),
    413: _error("Request body too large"),
    422: _error("Invalid parameter or body"),
    507: _error("Insufficient storage: the disk holding the database or data_dir is full"),
}


def _secure(schema: dict[str, Any], token_required: bool) -> None:
    schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    # Without a token the schemes are optional: {} is the anonymous alternative.
    requirement: list[dict[str, list[str]]] = [{"bearerToken": []}, {"queryToken": []}]
    if not token_required:
        requirement.append({})
    for path, operations in schema.get("paths", {}).items():
        if path.startswith("/api/") and path not in OPEN_OPERATIONS:
            for operation in operations.values():
                operation["security"] = requirement
        else:
            for operation in operations.values():
                operation["responses"].pop("401", None)


def install_openapi(app: FastAPI, *, token_required: bool) -> None:
    """Serve the schema with the ingest body's components (the body is read by hand for
    speed) and the token declared, so that generated clients and fuzzers can authenticate."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes,
                                 description=app.description)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(
                metrics.batch_schema())
            _secure(schema, token_required)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
