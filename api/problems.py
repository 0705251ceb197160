"""RFC 9457 problem+json for every error, with a stable snake_case `code`.

422 responses list the fields at fault as errors=[{field, code, message}].
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import ProblemError

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
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "code": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}


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
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


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

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
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
