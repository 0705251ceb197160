"""Exceptions raised by the SDK, and the mapping from RFC 9457 problem+json responses to them.

The hierarchy is documented in the package docstring (`mobile_sdk/__init__.py`).
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx


@dataclass(frozen=True, slots=True)
class FieldError:
    """One entry of a problem's `errors` list: which request field was wrong, and why."""

    field: str
    code: str
    message: str


class CheckinOffersError(Exception):
    """Base of every error the SDK raises."""


class TransportError(CheckinOffersError):
    """The server could not be reached (every attempt failed at the network level).

    The last `httpx.TransportError` is chained as `__cause__`.
    """


class ApiError(CheckinOffersError):
    """The server answered with an error status; `problem` is the problem+json body as sent."""

    def __init__(
        self,
        status: int,
        code: str | None,
        detail: str,
        errors: tuple[FieldError, ...] = (),
        problem: dict[str, Any] | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {code or 'error'}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = errors
        self.problem = problem if problem is not None else {}
        # Seconds the server asked us to wait (Retry-After on 429/503), None when it did not say.
        self.retry_after = retry_after


class AuthenticationError(ApiError):
    """401: the token was missing, invalid or expired, even after asking the provider again."""


class PermissionDeniedError(ApiError):
    """403: the token is valid but not allowed to do this."""


class NotFoundError(ApiError):
    """404 `not_found`: the code, venue or campaign does not exist."""


class ConflictError(ApiError):
    """409: the request conflicts with the resource's state."""


class AlreadyRedeemedError(ConflictError):
    """409 `already_redeemed`: the offer code was redeemed before."""


class CodeExpiredError(ApiError):
    """410 `expired`: the offer code is past its expiry."""


class ValidationError(ApiError):
    """422: the request was not valid; `errors` names the fields at fault.

    Also raised for `idempotency_key_reused` (same key sent with a different body).
    """


class RateLimitedError(ApiError):
    """429 `rate_limited`: slow down; `retry_after` says for how long, in seconds."""


class ServerError(ApiError):
    """5xx: the server failed; retrying later may succeed."""


_ERROR_BY_CODE: dict[str, type[ApiError]] = {
    "not_found": NotFoundError,
    "already_redeemed": AlreadyRedeemedError,
    "expired": CodeExpiredError,
    "rate_limited": RateLimitedError,
}

_ERROR_BY_STATUS: dict[int, type[ApiError]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    410: CodeExpiredError,
    422: ValidationError,
    429: RateLimitedError,
}


def error_from_response(response: httpx.Response) -> ApiError:
    """The typed exception for an error response: by problem `code` first, then by status."""
    problem = _problem(response)
    status = response.status_code
    code = problem.get("code") if isinstance(problem.get("code"), str) else None
    if code in _ERROR_BY_CODE:
        error_class = _ERROR_BY_CODE[code]
    elif status >= 500:
        error_class = ServerError
    else:
        error_class = _ERROR_BY_STATUS.get(status, ApiError)
    detail = problem.get("detail") or problem.get("title") or response.reason_phrase
    return error_class(
        status,
        code,
        str(detail or f"HTTP {status}"),
        _field_errors(problem.get("errors")),
        problem,
        retry_after=_retry_after(response),
    )


def _problem(response: httpx.Response) -> dict[str, Any]:
    # Proxies and crashed workers answer with HTML or nothing; the status alone must still map.
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _field_errors(raw: object) -> tuple[FieldError, ...]:
    if not isinstance(raw, list):
        return ()
    return tuple(
        FieldError(str(item.get("field", "")), str(item.get("code", "")), str(item.get("message", "")))
        for item in raw
        if isinstance(item, dict)
    )


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds; the header may be delta-seconds or an HTTP-date (RFC 9110)."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
