"""Merchants and venues."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from api import audited
from api.deps import AppUser, MerchantAdmin, MerchantReader, PlatformAdmin, ReadConnection, Session, merchant_of
from api.problems import error_responses
from api.schemas import MerchantIn, MerchantOut, NearbyOut, Page, VenueIn, VenueOut, VenuePatch
from core.errors import ValidationFailed
from core.tenancy import Merchant, create_merchant
from geo import venues
from geo.geofence import Geofence, GeofenceError, parse_geofence
from geo.venues import Venue

router = APIRouter(prefix="/v1", responses=error_responses(401, 403, 422, 429, 500))
PageSize = Annotated[int, Query(ge=1, le=100, description="page size, at most 100")]
Cursor = Annotated[uuid.UUID | None, Query(description="next_cursor of the previous page")]


def _geofence(value: object) -> Geofence:
    try:
        return parse_geofence(value, "geofence")
    except GeofenceError as exc:
        raise ValidationFailed.for_field(exc.field, exc.code, exc.message) from None


@router.post("/merchants", status_code=201, response_model=MerchantOut, tags=["merchants"])
async def create_merchant_route(body: MerchantIn, _: PlatformAdmin, session: Session) -> Merchant:
    return await create_merchant(session, body.name)


@router.post("/venues", status_code=201, response_model=VenueOut, tags=["venues"])
async def create_venue(body: VenueIn, principal: MerchantAdmin, session: Session) -> Venue:
    """Create a venue. Its time zone must keep the clock of the zone at the fence (422
    `timezone_mismatch` on `timezone`, naming the zone found in `timezone_found`: often latitude
    and longitude swapped); omitted, it is the zone at the fence."""
    return await audited.create_venue(
        session,
        principal,
        name=body.name,
        timezone=body.timezone,
        address=body.address,
        geofence=_geofence(body.geofence),
    )


@router.get("/venues", response_model=Page[VenueOut], tags=["venues"])
async def list_venues(
    principal: MerchantReader, session: Session, limit: PageSize = 50, cursor: Cursor = None
) -> dict[str, Any]:
    items = await venues.list_venues(session, merchant_of(principal), after=cursor, limit=limit)
    return {"items": items, "next_cursor": str(items[-1].id) if len(items) == limit else None}


@router.get("/venues/nearby", response_model=NearbyOut, tags=["venues"])
async def nearby(
    _: AppUser,
    conn: ReadConnection,
    lat: Annotated[float, Query(ge=-90, le=90, allow_inf_nan=False)],
    lon: Annotated[float, Query(ge=-180, le=180, allow_inf_nan=False)],
    radius_m: Annotated[float, Query(gt=0, le=5000, allow_inf_nan=False)] = 1000,
    limit: PageSize = 20,
) -> dict[str, Any]:
    return {"items": await venues.nearby_venues(conn, lat=lat, lon=lon, radius_m=radius_m, limit=limit)}


@router.get("/venues/{venue_id}", response_model=VenueOut, tags=["venues"], responses=error_responses(404))
async def get_venue(venue_id: uuid.UUID, principal: MerchantReader, session: Session) -> Venue:
    return await venues.get_venue(session, merchant_of(principal), venue_id)


@router.patch("/venues/{venue_id}", response_model=VenueOut, tags=["venues"], responses=error_responses(404))
async def update_venue(venue_id: uuid.UUID, body: VenuePatch, principal: MerchantAdmin, session: Session) -> Venue:
    """Change what is sent. A new fence or zone is checked like a new venue's: send both when
    moving a venue to another zone."""
    changes = body.model_dump(exclude_unset=True)
    for field in ("name", "timezone", "geofence"):
        if field in changes and changes[field] is None:
            raise ValidationFailed.for_field(field, "null_not_allowed", f"{field} cannot be null")
    if "geofence" in changes:
        changes["geofence"] = _geofence(changes["geofence"])
    return await audited.update_venue(session, principal, venue_id, changes)


@router.delete("/venues/{venue_id}", status_code=204, tags=["venues"], responses=error_responses(404, 409))
async def delete_venue(venue_id: uuid.UUID, principal: MerchantAdmin, session: Session) -> Response:
    """Delete a venue (its history stays). While an active or paused campaign runs there it is
    409 `venue_in_campaign`, naming them in `campaigns`: end them or take the venue out first."""
    await audited.delete_venue(session, principal, venue_id)
    return Response(status_code=204)
