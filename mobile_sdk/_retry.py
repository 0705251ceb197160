"""When to try a request again, and how long to wait first; shared by the sync and async clients.

One `Attempts` follows one logical request. After every try the client reports the outcome;
`Attempts` answers with the seconds to wait before the next try, or raises what the caller should
see. It does no I/O, so both clients drive it the same way.

Retried: network failures, 5xx, 429 `rate_limited` and 409 `idempotency_in_progress`. Waits use
exponential backoff with full jitter (base 0.2 s, cap 5 s). A Retry-After (sent with 429 and 503)
of up to the cap is waited out exactly; a longer one is raised at once (`ApiError.retry_after` says
how long) so an app is never blocked for minutes inside one call. A 401 is retried once, at
once and not counted as an attempt: the token provider is called before every try, so that retry
is its chance to hand out a refreshed token.
"""

from __future__ import annotations

import random

import httpx

from ._exceptions import (
    ApiError,
    AuthenticationError,
    RateLimitedError,
    ServerError,
    TransportError,
    error_from_response,
)

BASE_DELAY_S = 0.2
MAX_DELAY_S = 5.0
IN_PROGRESS = "idempotency_in_progress"


class Attempts:
    def __init__(self, max_attempts: int, rng: random.Random) -> None:
        self._max_attempts = max_attempts
        self._rng = rng
        self._made = 0
        self._token_refreshed = False

    def after_transport_error(self, exc: httpx.TransportError) -> float:
        self._made += 1
        if self._made >= self._max_attempts:
            raise TransportError(f"server unreachable after {self._made} attempt(s): {exc!r}") from exc
        return self._backoff()

    def after_response(self, response: httpx.Response) -> float | None:
        """None when the response is the answer; otherwise the wait before trying again."""
        if response.is_success:
            return None
        error = error_from_response(response)
        if isinstance(error, AuthenticationError) and not self._token_refreshed:
            self._token_refreshed = True
            return 0.0
        self._made += 1
        if not is_transient(error) or self._made >= self._max_attempts:
            raise error
        if error.retry_after is None:
            return self._backoff()
        if error.retry_after > MAX_DELAY_S:
            raise error
        return error.retry_after

    def _backoff(self) -> float:
        # Full jitter spreads out phones that lost the same cell tower at the same moment.
        ceiling = min(MAX_DELAY_S, BASE_DELAY_S * 2 ** (self._made - 1))
        return self._rng.uniform(0.0, ceiling)


def is_transient(error: ApiError) -> bool:
    return isinstance(error, RateLimitedError | ServerError) or error.code == IN_PROGRESS
