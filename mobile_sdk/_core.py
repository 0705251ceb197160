"""What the sync and async clients share: each endpoint's request and how its answer is read.

An endpoint is a `Call`: method, path, body, Idempotency-Key and a parser. The clients only add
the I/O loop that sends a `Call` until `_retry.Attempts` is satisfied, so request building,
parsing and retry decisions exist once.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from ._exceptions import CheckinOffersError
from ._models import (
    CheckinRequest,
    CheckinResult,
    NearbyVenue,
    Redemption,
    WalletPage,
    checkin_body,
    parse_checkin_result,
    parse_nearby,
    parse_object,
    parse_redemption,
    parse_wallet_page,
)
from ._queue import OfflineQueue
from ._retry import Attempts

T = TypeVar("T")

USER_AGENT = "checkin-offers-mobile-sdk"
_ACCEPT = "application/json, application/problem+json"


@dataclass(frozen=True)
class Call(Generic[T]):
    """One logical request. Built once and sent on every try, so its Idempotency-Key is reused."""

    method: str
    path: str
    parse: Callable[[Any], T]
    json: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    idempotency_key: str | None = None

    def headers(self, token: str) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {token}", "Accept": _ACCEPT}
        if self.idempotency_key is not None:
            headers["Idempotency-Key"] = self.idempotency_key
        return headers

    def read(self, response: httpx.Response) -> T:
        try:
            return self.parse(response.json())
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckinOffersError(f"unexpected response to {self.method} {self.path}: {exc!r}") from exc


def checkin_call(request: CheckinRequest) -> Call[CheckinResult]:
    return Call(
        "POST",
        "/v1/checkins",
        parse_checkin_result,
        json=checkin_body(request),
        idempotency_key=request.idempotency_key,
    )


def wallet_call(cursor: str | None, limit: int | None) -> Call[WalletPage]:
    params: dict[str, Any] = {}
    if cursor is not None:
        params["cursor"] = cursor
    if limit is not None:
        params["limit"] = limit
    return Call("GET", "/v1/me/offers", parse_wallet_page, params=params or None)


def nearby_call(lat: float, lon: float, radius_m: float | None, limit: int | None) -> Call[list[NearbyVenue]]:
    params: dict[str, Any] = {"lat": lat, "lon": lon}
    if radius_m is not None:
        params["radius_m"] = radius_m
    if limit is not None:
        params["limit"] = limit
    return Call("GET", "/v1/venues/nearby", parse_nearby, params=params)


def redeem_call(code: str, venue_id: str) -> Call[Redemption]:
    # A key of its own makes a retried redemption answer with the first one's receipt instead of
    # 409 already_redeemed when only the first answer was lost.
    return Call(
        "POST",
        "/v1/redemptions",
        parse_redemption,
        json={"code": code, "venue_id": venue_id},
        idempotency_key=str(uuid.uuid4()),
    )


def campaign_stats_call(campaign_id: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/v1/campaigns/{quote(str(campaign_id), safe='')}/stats", parse_object)


def export_call() -> Call[dict[str, Any]]:
    return Call("GET", "/v1/me/export", parse_object)


def erase_me_call() -> Call[dict[str, Any]]:
    return Call("DELETE", "/v1/me", parse_object)


class ClientCore:
    """Configuration both clients hold, and the per-request retry bookkeeping they start from."""

    def __init__(self, *, max_attempts: int, queue: OfflineQueue | None, rng: random.Random | None) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._max_attempts = max_attempts
        self._queue = queue
        self._rng = rng or random.Random()

    def _attempts(self) -> Attempts:
        return Attempts(self._max_attempts, self._rng)

    def _forget_queue(self) -> None:
        """After an erasure: check-ins queued before it must not bring the person back."""
        if self._queue is not None:
            self._queue.clear()

    def _require_queue(self) -> OfflineQueue:
        if self._queue is None:
            raise RuntimeError("this needs a client created with queue=OfflineQueue(path)")
        return self._queue
