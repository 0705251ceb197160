"""Venues in the console: the list with a map of every fence, one venue with its recent
check-ins, and the form that creates or edits a venue by drawing or pasting its fence.

Saving validates exactly as POST/PATCH /v1/venues do (the request schema VenueIn, then
geo.geofence.parse_geofence) and stores with the same functions (api/audited.py over geo.venues,
recording each change in the audit trail). Only a merchant's admin manages venues (others of
the merchant may read them in the API, not here).
"""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from api import audited
from api.console.pages import forbidden, not_found, own_venue, render
from api.console.session import ConsoleUser, check_csrf
from api.deps import Session, SettingsDep, merchant_of
from api.schemas import TIMEZONES, FreeFormObject, VenueIn
from core.auth import Principal, Role
from core.errors import ValidationFailed
from geo import venues
from geo.checkins import RecentCheckin, recent_checkins
from geo.geofence import Geofence, GeofenceError, parse_geofence
from geo.timezones import venue_timezone
from geo.venues import Venue

router = APIRouter(prefix="/dashboard", include_in_schema=False)

MAX_LISTED = 500  # venues on the list page; a merchant with more sees a note
RECENT_CHECKINS = 300  # points on a venue's map
RECENT_ROWS = 15  # of which listed as a table under the map
FORM_FIELDS = ("name", "address", "timezone", "geofence")
# Suggestions only (any zone VenueIn accepts is accepted): the regional names, without legacy aliases.
TIMEZONE_CHOICES = ["UTC"] + sorted(
    zone for zone in TIMEZONES if "/" in zone and not zone.startswith(("Etc/", "SystemV/", "US/"))
)

# One colour per outcome, the same on the map and in its legend; the order is the plausibility
# checks' order (README, "Plausibility"), so the legend reads like the pipeline.
OUTCOME_COLOURS = {
    "accepted": "#1a7f37",
    "mocked_location": "#bf3989",
    "future_timestamp": "#1b7c83",
    "stale": "#6e7781",
    "accuracy_too_low": "#d4a72c",
    "venue_mismatch": "#bc4c00",
    "outside_geofence": "#cf222e",
    "too_fast": "#0969da",
    "too_frequent": "#8250df",
}
UNKNOWN_OUTCOME_COLOUR = "#24292f"
# GEOS names the place of a self-intersection in its reason: "Self-intersection[10.75 59.91]".
_GEOS_LOCATION = re.compile(r"\[(-?[0-9.]+(?:e[-+]?[0-9]+)?) (-?[0-9.]+(?:e[-+]?[0-9]+)?)\]")


# --------------------------------------------------------------------------- describing venues


def format_area(area_m2: float) -> str:
    return f"{area_m2:,.0f} m²" if area_m2 < 100_000 else f"{area_m2 / 1_000_000:,.2f} km²"


def describe_fence(geojson: dict[str, Any], area_m2: float) -> str:
    """ "circle, radius 40 m", "polygon, 1,234 m²", "multipolygon of 2 parts, 2.10 km²"."""
    kind = geojson.get("type")
    if kind == "Circle":
        return f"circle, radius {geojson['radius_m']:,.0f} m"
    if kind == "MultiPolygon":
        return f"multipolygon of {len(geojson['coordinates'])} parts, {format_area(area_m2)}"
    return f"polygon, {format_area(area_m2)}"


@dataclass(frozen=True)
class VenueRow:
    id: uuid.UUID
    name: str
    address: str | None
    timezone: str
    fence: str
    geofence: dict[str, Any]

    @classmethod
    def of(cls, venue: Venue) -> VenueRow:
        fence = describe_fence(venue.geofence, venue.area_m2)
        return cls(venue.id, venue.name, venue.address, venue.timezone, fence, venue.geofence)

    def map_entry(self) -> dict[str, Any]:
        return {"id": str(self.id), "name": self.name, "geofence": self.geofence}


def outcome(checkin: RecentCheckin) -> str:
    return checkin.reason or "accepted"


def checkin_points(checkins: list[RecentCheckin], timezone: str) -> list[dict[str, Any]]:
    """The map's points: who (a pseudonym), about where (to about 100 m, geo.checkins.coarse_position;
    None once retention removed it), how far from the fence (exact), how precise, when (the venue's
    local time) and the outcome's colour."""
    zone = ZoneInfo(timezone)
    return [
        {
            "customer": c.customer,
            "lon": c.lon,
            "lat": c.lat,
            "distance_to_fence_m": c.distance_to_fence_m,
            "accuracy_m": c.accuracy_m,
            "outcome": outcome(c),
            "colour": OUTCOME_COLOURS.get(outcome(c), UNKNOWN_OUTCOME_COLOUR),
            "local_time": c.observed_at.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
        }
        for c in checkins
    ]


def legend(checkins: list[RecentCheckin]) -> list[dict[str, Any]]:
    """The outcomes present, in pipeline order, with their counts."""
    counts = Counter(outcome(c) for c in checkins)
    known = [name for name in OUTCOME_COLOURS if counts[name]]
    unknown = sorted(name for name in counts if name not in OUTCOME_COLOURS)
    return [
        {"outcome": name, "colour": OUTCOME_COLOURS.get(name, UNKNOWN_OUTCOME_COLOUR), "count": counts[name]}
        for name in known + unknown
    ]


# --------------------------------------------------------------------------- the form


@dataclass(frozen=True)
class VenueForm:
    """What the form sent (or shows), as text: re-shown unchanged when it is refused."""

    name: str = ""
    address: str = ""
    timezone: str = ""
    geofence: str = ""

    @classmethod
    def sent(cls, form: Any) -> VenueForm:
        values = {name: form.get(name) for name in FORM_FIELDS}
        return cls(**{name: value if isinstance(value, str) else "" for name, value in values.items()})

    @classmethod
    def of(cls, venue: Venue) -> VenueForm:
        return cls(venue.name, venue.address or "", venue.timezone, json.dumps(venue.geofence))


@dataclass(frozen=True)
class FenceError:
    """A refused fence: the API's field path, stable code and message, and where on the map the
    problem is, when that can be told (a self-intersection, a bad vertex, a circle's centre)."""

    field: str
    code: str
    message: str
    location: list[float] | None = None

    def as_json(self) -> dict[str, Any]:
        return {"field": self.field, "code": self.code, "message": self.message, "location": self.location}


@dataclass
class FormErrors:
    fields: dict[str, str] = field(default_factory=dict)  # form field -> message shown next to it
    fence: FenceError | None = None


@dataclass(frozen=True)
class ValidVenue:
    name: str
    address: str | None
    timezone: str
    geofence: Geofence


def _position(node: object) -> list[float] | None:
    if isinstance(node, list) and len(node) >= 2 and all(isinstance(x, int | float) for x in node[:2]):
        lon, lat = float(node[0]), float(node[1])
        if -180 <= lon <= 180 and -90 <= lat <= 90:
            return [lon, lat]
    return None


def fence_error_location(raw: object, error: GeofenceError) -> list[float] | None:
    """Where to pin the error on the map: GEOS's own location, else the last position on the
    error's field path (a vertex out of range, an unclosed ring's start), else a circle's centre."""
    found = _GEOS_LOCATION.search(error.message)
    if found:
        return _position([float(found[1]), float(found[2])])
    node, located = raw, None
    for part in error.field.split(".")[1:]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            break
        located = _position(node) or located
    if located is None and isinstance(node, list) and node:
        located = _position(node[0])  # a ring refused as a whole: pinned at its first vertex
    if located is None and isinstance(raw, dict) and raw.get("type") == "Circle":
        located = _position(raw.get("center"))
    return located


_FREE_FORM_OBJECT: TypeAdapter[dict[str, Any]] = TypeAdapter(FreeFormObject)


def check_fence(text: str) -> Geofence | FenceError:
    """The fence as the API would take it, or why not (JSON first, then parse_geofence)."""
    if not text.strip():
        return FenceError("geofence", "missing_field", "Draw a circle or polygon on the map, or paste GeoJSON.")
    try:
        raw = json.loads(text)
    except ValueError as exc:
        return FenceError("geofence", "invalid_json", f"geofence is not valid JSON: {exc}")
    except RecursionError:  # thousands of nested brackets: no geofence is that deep
        return FenceError("geofence", "invalid_json", "geofence is nested too deeply to be GeoJSON")
    if isinstance(raw, dict):  # as the API: NUL, lone surrogates (which no page can show) or deep nesting
        try:
            _FREE_FORM_OBJECT.validate_python(raw)
        except ValidationError as exc:
            problem = exc.errors()[0]
            return FenceError("geofence", problem["type"], f"geofence: {problem['msg']}")
    try:
        return parse_geofence(raw, "geofence")
    except GeofenceError as exc:
        return FenceError(exc.field, exc.code, exc.message, fence_error_location(raw, exc))


def check_venue_form(form: VenueForm) -> ValidVenue | FormErrors:
    """The request schema of POST /v1/venues for name, time zone and address, then the fence."""
    errors = FormErrors()
    fence = check_fence(form.geofence)
    if isinstance(fence, FenceError):
        errors.fence = fence
        errors.fields["geofence"] = fence.message
    name, address = form.name.strip(), form.address.strip() or None
    timezone = form.timezone.strip() or None  # left empty: the zone of the fence's position
    try:
        VenueIn.model_validate({"name": name, "timezone": timezone, "address": address, "geofence": {}})
    except ValidationError as exc:
        for problem in exc.errors():
            field = str(problem["loc"][0]) if problem["loc"] else "name"
            errors.fields.setdefault(field, str(problem["msg"]).removeprefix("Value error, "))
    if errors.fields or isinstance(fence, FenceError):
        return errors
    try:  # the API's check: the zone must keep the clock at the fence (swapped lat/lon shows here)
        timezone = venue_timezone(fence.geojson, timezone)
    except ValidationFailed as exc:
        errors.fields["timezone"] = exc.detail
        return errors
    return ValidVenue(name, address, timezone, fence)


# --------------------------------------------------------------------------- pages


async def _other_fences(session: AsyncSession, principal: Principal, but: uuid.UUID | None) -> list[dict[str, Any]]:
    """The merchant's other venues, drawn faintly behind the one being edited, for orientation."""
    found = await venues.list_venues(session, merchant_of(principal), after=None, limit=MAX_LISTED)
    return [VenueRow.of(v).map_entry() for v in found if v.id != but]


async def _form_page(
    request: Request,
    principal: Principal,
    session: AsyncSession,
    *,
    venue: Venue | None,
    form: VenueForm,
    errors: FormErrors | None = None,
) -> HTMLResponse:
    errors = errors or FormErrors()
    return render(
        request,
        "venue_form.html",
        principal,
        status_code=422 if errors.fields else 200,
        venue=venue,
        form=form,
        errors=errors.fields,
        fence_error=errors.fence.as_json() if errors.fence else None,
        context_fences=await _other_fences(session, principal, venue.id if venue else None),
        timezones=TIMEZONE_CHOICES,
        action=f"/dashboard/venues/{venue.id}/edit" if venue else "/dashboard/venues/new",
    )


def _admin(principal: Principal) -> bool:
    return principal.role == Role.MERCHANT_ADMIN


@router.get("/venues")
async def venue_list(request: Request, principal: ConsoleUser, session: Session) -> Response:
    if not _admin(principal):
        return forbidden(request, principal)
    found = await venues.list_venues(session, merchant_of(principal), after=None, limit=MAX_LISTED + 1)
    rows = sorted((VenueRow.of(v) for v in found[:MAX_LISTED]), key=lambda row: row.name.casefold())
    return render(
        request,
        "venues.html",
        principal,
        venues=rows,
        map_venues=[row.map_entry() for row in rows],
        truncated=len(found) > MAX_LISTED,
    )


@router.get("/venues/new")
async def new_venue_form(request: Request, principal: ConsoleUser, session: Session) -> Response:
    if not _admin(principal):
        return forbidden(request, principal)
    return await _form_page(request, principal, session, venue=None, form=VenueForm())


@router.post("/venues/new")
async def create_venue(request: Request, principal: ConsoleUser, session: Session, settings: SettingsDep) -> Response:
    await check_csrf(request, settings)
    if not _admin(principal):
        return forbidden(request, principal)
    form = VenueForm.sent(await request.form())
    checked = check_venue_form(form)
    if isinstance(checked, FormErrors):
        return await _form_page(request, principal, session, venue=None, form=form, errors=checked)
    venue = await audited.create_venue(
        session,
        principal,
        name=checked.name,
        timezone=checked.timezone,
        address=checked.address,
        geofence=checked.geofence,
    )
    return RedirectResponse(f"/dashboard/venues/{venue.id}", 303)


@router.post("/venues/fence-check")
async def fence_check(request: Request, principal: ConsoleUser, settings: SettingsDep) -> Response:
    """The form's live check while drawing or pasting: what saving would say about the fence."""
    await check_csrf(request, settings)
    if not _admin(principal):
        return JSONResponse({"detail": "only a merchant's admin manages venues"}, status_code=403)
    text = (await request.form()).get("geofence")
    fence = check_fence(text if isinstance(text, str) else "")
    if isinstance(fence, FenceError):
        return JSONResponse({"ok": False, "error": fence.as_json()})
    return JSONResponse({"ok": True, "summary": describe_fence(fence.geojson, fence.area_m2)})


@router.get("/venues/{venue_id}")
async def venue_page(
    venue_id: str, request: Request, principal: ConsoleUser, session: Session, settings: SettingsDep
) -> Response:
    if not _admin(principal):
        return forbidden(request, principal)
    venue = await own_venue(session, principal, venue_id)
    if venue is None:
        return not_found(request, principal)
    checkins = await recent_checkins(session, settings, merchant_of(principal), venue.id, RECENT_CHECKINS)
    points = checkin_points(checkins, venue.timezone)
    return render(
        request,
        "venue.html",
        principal,
        venue=VenueRow.of(venue),
        points=points,
        recent=points[:RECENT_ROWS],
        legend=legend(checkins),
        shown=len(checkins),
        limit=RECENT_CHECKINS,
    )


@router.get("/venues/{venue_id}/edit")
async def edit_venue_form(venue_id: str, request: Request, principal: ConsoleUser, session: Session) -> Response:
    if not _admin(principal):
        return forbidden(request, principal)
    venue = await own_venue(session, principal, venue_id)
    if venue is None:
        return not_found(request, principal)
    return await _form_page(request, principal, session, venue=venue, form=VenueForm.of(venue))


@router.post("/venues/{venue_id}/edit")
async def update_venue(
    venue_id: str, request: Request, principal: ConsoleUser, session: Session, settings: SettingsDep
) -> Response:
    await check_csrf(request, settings)
    if not _admin(principal):
        return forbidden(request, principal)
    venue = await own_venue(session, principal, venue_id)
    if venue is None:
        return not_found(request, principal)
    form = VenueForm.sent(await request.form())
    checked = check_venue_form(form)
    if isinstance(checked, FormErrors):
        return await _form_page(request, principal, session, venue=venue, form=form, errors=checked)
    changes = {
        "name": checked.name,
        "timezone": checked.timezone,
        "address": checked.address,
        "geofence": checked.geofence,
    }
    await audited.update_venue(session, principal, venue.id, changes)
    return RedirectResponse(f"/dashboard/venues/{venue.id}", 303)
