"""Frozen result types, and the parsing from the server's JSON into them.

Parsers read required keys with `[]` on purpose: a missing key is a broken response and surfaces
as one `CheckinOffersError` (see `_core.Call.read`) instead of a half-filled result.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class Venue:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class UnlockedOffer:
    """An offer a check-in unlocked; `code` is shown to the merchant to redeem it."""

    unlock_id: str
    offer_id: str
    title: str
    description: str | None
    terms: str | None
    code: str
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class CheckinResult:
    """The server's verdict on a check-in; `reason` says why when `status` is "rejected"."""

    id: str
    status: Literal["accepted", "rejected"]
    reason: str | None
    detail: str | None
    venue: Venue | None
    unlocked: tuple[UnlockedOffer, ...]


@dataclass(frozen=True, slots=True)
class WalletOffer:
    """An offer in the user's wallet (`GET /v1/me/offers`)."""

    unlock_id: str
    offer_id: str
    title: str
    description: str | None
    terms: str | None
    code: str
    status: Literal["active", "redeemed", "expired"]
    expires_at: datetime | None
    venue: Venue


@dataclass(frozen=True, slots=True)
class WalletPage:
    """One page of the wallet, newest first. Pass `next_cursor` back for the next page; it is
    None on the last one. The cursor is opaque: keep it as it came."""

    items: tuple[WalletOffer, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class NearbyVenue:
    id: str
    name: str
    distance_m: float
    has_checkin_offer: bool


@dataclass(frozen=True, slots=True)
class Redemption:
    id: str
    unlock_id: str
    offer_id: str
    venue_id: str
    redeemed_at: datetime
    title: str  # the offer's: what the till gives
    terms: str


@dataclass(frozen=True, slots=True)
class CheckinRequest:
    """A check-in as the user made it, with the Idempotency-Key every send of it carries.

    Retries and offline replays send this exact body under this key, so the server unlocks
    offers for it at most once however many times it arrives.
    """

    idempotency_key: str
    lat: float
    lon: float
    accuracy_m: float
    observed_at: datetime
    venue_id: str | None = None
    device_id: str | None = None
    mocked: bool | None = None


@dataclass(frozen=True, slots=True)
class Queued:
    """A check-in held in the offline queue; `seq` orders replay (first queued, first sent)."""

    seq: int
    queued_at: datetime
    request: CheckinRequest


def new_checkin_request(
    lat: float,
    lon: float,
    accuracy_m: float,
    observed_at: datetime | None,
    venue_id: str | None,
    device_id: str | None,
    mocked: bool | None,
) -> CheckinRequest:
    if observed_at is None:
        observed_at = datetime.now(UTC)
    elif observed_at.utcoffset() is None:
        # A naive time would be read in the server's zone, not the phone's: refuse to guess.
        raise ValueError("observed_at must be timezone-aware")
    return CheckinRequest(
        idempotency_key=str(uuid.uuid4()),
        lat=lat,
        lon=lon,
        accuracy_m=accuracy_m,
        observed_at=observed_at,
        venue_id=venue_id,
        device_id=device_id,
        mocked=mocked,
    )


def checkin_body(request: CheckinRequest) -> dict[str, Any]:
    """The JSON body for `POST /v1/checkins`; optional fields are left out when unset."""
    body: dict[str, Any] = {
        "lat": request.lat,
        "lon": request.lon,
        "accuracy_m": request.accuracy_m,
        "observed_at": request.observed_at.isoformat(),
    }
    optional = {
        "venue_id": request.venue_id,
        "device_id": request.device_id,
        "mocked": request.mocked,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    return body


def checkin_request_from_body(idempotency_key: str, body: dict[str, Any]) -> CheckinRequest:
    """Inverse of `checkin_body`: rebuilding from it yields the same body, byte for byte."""
    return CheckinRequest(
        idempotency_key=idempotency_key,
        lat=body["lat"],
        lon=body["lon"],
        accuracy_m=body["accuracy_m"],
        observed_at=datetime.fromisoformat(body["observed_at"]),
        venue_id=body.get("venue_id"),
        device_id=body.get("device_id"),
        mocked=body.get("mocked"),
    )


def _optional_datetime(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _venue(data: dict[str, Any]) -> Venue:
    return Venue(id=data["id"], name=data["name"])


def parse_checkin_result(data: dict[str, Any]) -> CheckinResult:
    venue = data.get("venue")
    return CheckinResult(
        id=data["id"],
        status=data["status"],
        reason=data.get("reason"),
        detail=data.get("detail"),
        venue=None if venue is None else _venue(venue),
        unlocked=tuple(
            UnlockedOffer(
                unlock_id=item["unlock_id"],
                offer_id=item["offer_id"],
                title=item["title"],
                description=item.get("description"),
                terms=item.get("terms"),
                code=item["code"],
                expires_at=_optional_datetime(item.get("expires_at")),
            )
            for item in data.get("unlocked") or ()
        ),
    )


def parse_wallet_page(data: dict[str, Any]) -> WalletPage:
    return WalletPage(
        items=tuple(
            WalletOffer(
                unlock_id=item["unlock_id"],
                offer_id=item["offer_id"],
                title=item["title"],
                description=item.get("description"),
                terms=item.get("terms"),
                code=item["code"],
                status=item["status"],
                expires_at=_optional_datetime(item.get("expires_at")),
                venue=_venue(item["venue"]),
            )
            for item in data["items"]
        ),
        # .get: a server from before wallet pages sends no cursor, and its one page is all there is.
        next_cursor=data.get("next_cursor"),
    )


def parse_nearby(data: dict[str, Any]) -> list[NearbyVenue]:
    return [
        NearbyVenue(
            id=item["id"],
            name=item["name"],
            distance_m=float(item["distance_m"]),
            has_checkin_offer=bool(item["has_checkin_offer"]),
        )
        for item in data["items"]
    ]


def parse_redemption(data: dict[str, Any]) -> Redemption:
    return Redemption(
        id=data["id"],
        unlock_id=data["unlock_id"],
        offer_id=data["offer_id"],
        venue_id=data["venue_id"],
        redeemed_at=datetime.fromisoformat(data["redeemed_at"]),
        title=data["title"],
        terms=data["terms"],
    )


def parse_object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise TypeError(f"expected a JSON object, got {type(data).__name__}")
    return data
