"""Typed client for the check-in offers API, for mobile apps and merchant tools.

    from mobile_sdk import CheckinOffersClient, OfflineQueue, Queued

    with CheckinOffersClient(
        "https://api.example.com", token_provider=session.current_jwt,
        queue=OfflineQueue(app_dir / "checkins.sqlite3"),
    ) as client:
        client.replay_queue()                 # first: what was queued while offline
        result = client.checkin_or_queue(lat, lon, accuracy_m=12.0)
        if isinstance(result, Queued):
            ...                               # offline; sent by a later replay_queue()

`AsyncCheckinOffersClient` has the same methods as coroutines.

Wallet: `wallet_page(cursor=None, limit=None)` returns one `WalletPage` (newest first); pass its
`next_cursor` back for the next page, None on the last. `iter_wallet()` walks every page lazily
(an async iterator on the async client); `wallet()` returns every offer as a list.

Privacy: `export_my_data()` returns everything the service holds about the signed-in person
(GET /v1/me/export); `erase_me()` erases it (DELETE /v1/me), empties the offline queue so no replay
brings the person back, and returns the receipt; asking again answers the same receipt.

Token provider: called with no arguments before every request; returns the JWT (the async
client also accepts an awaitable). After a 401 the client calls it once more and retries that
request once, so a provider that refreshes expired tokens recovers without the app noticing;
a second 401 raises `AuthenticationError`.

Retries: every check-in carries one Idempotency-Key (uuid4) reused on every retry and replay, so
it unlocks offers at most once; `redeem` does the same. Network errors, 5xx, 429 and 409
`idempotency_in_progress` are retried up to `max_attempts` (default 5) with exponential backoff
and full jitter (0.2 s base, 5 s cap). Retry-After is waited out when it is at most 5 s; a longer
one is raised at once with `.retry_after` set, so the app decides when to come back.

Exceptions, matched on the problem+json `code` first, then on the HTTP status::

    CheckinOffersError               anything raised by this package
    ├── TransportError               server unreachable on every attempt (cause: httpx error)
    └── ApiError                     .status .code .detail .errors .problem .retry_after
        ├── AuthenticationError      401
        ├── PermissionDeniedError    403
        ├── NotFoundError            404 not_found
        ├── ConflictError            409 (incl. idempotency_in_progress after the last attempt)
        │   └── AlreadyRedeemedError 409 already_redeemed
        ├── CodeExpiredError         410 expired
        ├── ValidationError          422 (incl. idempotency_key_reused); .errors: FieldError
        ├── RateLimitedError         429 rate_limited; .retry_after in seconds
        └── ServerError              5xx

Other statuses raise `ApiError` itself. A success response that cannot be parsed raises
`CheckinOffersError`.
"""

from ._async_client import AsyncCheckinOffersClient
from ._client import CheckinOffersClient
from ._exceptions import (
    AlreadyRedeemedError,
    ApiError,
    AuthenticationError,
    CheckinOffersError,
    CodeExpiredError,
    ConflictError,
    FieldError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    TransportError,
    ValidationError,
)
from ._models import (
    CheckinRequest,
    CheckinResult,
    NearbyVenue,
    Queued,
    Redemption,
    UnlockedOffer,
    Venue,
    WalletOffer,
    WalletPage,
)
from ._queue import OfflineQueue

__all__ = [
    "AlreadyRedeemedError",
    "ApiError",
    "AsyncCheckinOffersClient",
    "AuthenticationError",
    "CheckinOffersClient",
    "CheckinOffersError",
    "CheckinRequest",
    "CheckinResult",
    "CodeExpiredError",
    "ConflictError",
    "FieldError",
    "NearbyVenue",
    "NotFoundError",
    "OfflineQueue",
    "PermissionDeniedError",
    "Queued",
    "RateLimitedError",
    "Redemption",
    "ServerError",
    "TransportError",
    "UnlockedOffer",
    "ValidationError",
    "Venue",
    "WalletOffer",
    "WalletPage",
]
