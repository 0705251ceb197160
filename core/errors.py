"""Domain errors with a stable code and HTTP status, rendered as RFC 9457 problem+json.

Services raise these; the single exception handler in `api.problems` renders them.
"""

from __future__ import annotations

from typing import Any


class ProblemError(Exception):
    """Base of every error the API reports to a client."""

    status: int = 400
    code: str = "bad_request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        code: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        if code:  # a more specific stable code than the class default
            self.code = code
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra


class BadRequest(ProblemError):
    status, code, title = 400, "bad_request", "Bad request"


class Unauthorized(ProblemError):
    status, code, title = 401, "unauthorized", "Authentication required"

    def __init__(self, detail: str | None = None, **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(detail, **kw)


class Forbidden(ProblemError):
    status, code, title = 403, "forbidden", "Forbidden"


class NotFound(ProblemError):
    status, code, title = 404, "not_found", "Not found"


class Conflict(ProblemError):
    status, code, title = 409, "conflict", "Conflict"


class Gone(ProblemError):
    status, code, title = 410, "expired", "Gone"


class PayloadTooLarge(ProblemError):
    # The title a streamed body over the limit gets too (api.limits raises an HTTPException there).
    status, code, title = 413, "payload_too_large", "Payload too large"


class ValidationFailed(ProblemError):
    """422 with the fields at fault: errors=[{"field": "geofence.coordinates", "code": ..., "message": ...}]."""

    status, code, title = 422, "validation_error", "Request is not valid"

    @classmethod
    def for_field(cls, field: str, code: str, message: str) -> ValidationFailed:
        return cls(message, errors=[{"field": field, "code": code, "message": message}])


class TooManyRequests(ProblemError):
    status, code, title = 429, "rate_limited", "Too many requests"

    def __init__(self, retry_after_s: int, detail: str | None = None, **kw: Any) -> None:
        kw.setdefault("headers", {"Retry-After": str(max(1, int(retry_after_s)))})
        super().__init__(detail, retry_after=max(1, int(retry_after_s)), **kw)


class ServiceUnavailable(ProblemError):
    """503 with Retry-After: something the request needs is briefly away (the database restarting).
    The detail says whether the request may have been applied before it failed."""

    status, code, title = 503, "service_unavailable", "Service unavailable"

    def __init__(self, retry_after_s: int, detail: str | None = None, **kw: Any) -> None:
        kw.setdefault("headers", {"Retry-After": str(max(1, int(retry_after_s)))})
        super().__init__(detail, retry_after=max(1, int(retry_after_s)), **kw)
