"""RFC 9457 problem+json for every error, with a stable snake_case `code`.

422 responses list the fields at fault as errors=[{field, code, message}].
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.db import DATABASE_ERRORS, unavailable
from core.errors import ProblemError
from core.logs import REQUEST_ID

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    431: "request_header_fields_too_large",
    500: "internal_error",
    503: "service_unavailable",
}

PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string", "description": "stable, snake_case"},
        "instance": {"type": "string"},
        "request_id": {"type": "string", "description": "the X-Request-ID of the response, to quote in a report"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "code": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class ProblemResponse(JSONResponse):
    """problem+json that always encodes: a lone UTF-16 surrogate a message echoes from the input
    (JSON allows "\\ud800", UTF-8 cannot encode it) is sent as U+FFFD instead of failing as a 500."""

    media_type = PROBLEM_JSON

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))
        return _LONE_SURROGATE.sub("\ufffd", text).encode("utf-8")


class ProblemHTTPException(StarletteHTTPException):
    """A ProblemError raised where only an HTTPException gets through: FastAPI turns anything else
    raised while it reads a body into a 400. Rendered as the problem it carries."""

    def __init__(self, problem: ProblemError) -> None:
        super().__init__(problem.status, problem.detail, problem.headers)
        self.problem = problem


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": f"https://checkin-offers.dev/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance:
        body["instance"] = instance
    if request_id := REQUEST_ID.get():
        body["request_id"] = request_id
    body.update({k: v for k, v in extra.items() if v is not None})
    return ProblemResponse(body, status_code=status, headers=headers)


def error_response(exc: ProblemError, *, instance: str | None = None) -> JSONResponse:
    return problem_response(
        exc.status,
        exc.code,
        exc.title,
        exc.detail,
        instance=instance,
        headers=exc.headers,
        errors=exc.errors,
        **exc.extra,
    )


def _field(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or str(loc[-1])


def install(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return error_response(exc, instance=request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _field(tuple(e["loc"])), "code": e["type"], "message": e["msg"]} for e in exc.errors()]
        return problem_response(
            422,
            "validation_error",
            "Request is not valid",
            "; ".join(f"{e['field']}: {e['message']}" for e in errors),
            instance=request.url.path,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc, ProblemHTTPException):
            return error_response(exc.problem, instance=request.url.path)
        code = HTTP_CODES.get(exc.status_code, "http_error")
        return problem_response(
            exc.status_code,
            code,
            code.replace("_", " ").capitalize(),
            str(exc.detail),
            instance=request.url.path,
            headers=getattr(exc, "headers", None),
        )

    async def _database_away(request: Request, exc: Exception) -> JSONResponse:
        # The request's own transaction and hot-path connection (core/db.py) answer this 503 with
        # what they know of the outcome; anything else that loses the database lands here, unknown.
        problem = unavailable(exc)
        if problem is None:
            raise exc  # about the request, not about reaching the database: the 500 below
        return error_response(problem, instance=request.url.path)

    for database_error in DATABASE_ERRORS:
        app.add_exception_handler(database_error, _database_away)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The route's template, never the path: a path can hold a redemption code.
        route = getattr(request.scope.get("route"), "path_format", "unmatched")
        log.exception("unhandled error on %s %s", request.method, route)
        # The server drops the connection after an unhandled error: tell the client not to reuse it.
        return problem_response(
            500,
            "internal_error",
            "Internal server error",
            "the request failed and changed nothing; it is safe to retry",
            instance=request.url.path,
            headers={"Connection": "close"},
        )


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for a route's error responses, all problem+json."""
    return {
        s: {
            "description": HTTP_CODES.get(s, "error").replace("_", " "),
            "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}},
        }
        for s in statuses
    }
