"""Demo data for `checkin-offers seed-demo`: a coffee chain and a bakery in Oslo and Copenhagen.

Each merchant has venues in both cities (circles and polygons around real places) and one active
campaign whose offers show the rules: every check-in, first visit, every n-th visit, loyalty, flash
"first N", group and a happy-hour schedule. The merchants have fixed ids, so a second run finds them
and changes nothing, and tokens printed once stay valid after the database is re-seeded.
`checkin-offers simulate` drives traffic at these venues.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.auth import mint_token
from core.db import get_engine, get_sessionmaker
from core.settings import get_settings
from core.tenancy import Merchant
from geo.geofence import parse_geofence
from geo.venues import create_venue
from offers.campaigns import add_offer, create_campaign, transition
from offers.rules import Rule, Schedule

OSLO = "Europe/Oslo"
COPENHAGEN = "Europe/Copenhagen"
CAMPAIGN_DAYS = 365
TOKEN_TTL_S = 24 * 3600
_RULE = TypeAdapter(Rule)


@dataclass(frozen=True)
class DemoVenue:
    name: str
    timezone: str
    address: str
    geofence: dict[str, Any]


@dataclass(frozen=True)
class DemoMerchant:
    id: uuid.UUID
    name: str
    venues: tuple[DemoVenue, ...]
    campaign: str
    holdout_percent: int
    offers: tuple[dict[str, Any], ...]  # add_offer's keyword arguments, rule and schedule as JSON


def _offer(title: str, description: str, rule: dict, *, per_user_limit: int = 1, total_limit: int = 1_000_000,
           redeem_within_minutes: int = 120, schedule: dict | None = None) -> dict[str, Any]:
    return {"title": title, "description": description, "terms": "One per check-in; not combinable.",
            "rule": rule, "schedule": schedule, "per_user_limit": per_user_limit, "total_limit": total_limit,
            "redeem_within_minutes": redeem_within_minutes}


COFFEE = DemoMerchant(
    id=uuid.UUID("0d3c0ffe-0000-4000-8000-000000000001"),
    name="Fjordkaffe",
    venues=(
        DemoVenue("Fjordkaffe Aker Brygge", OSLO, "Stranden 3, 0250 Oslo",
                  {"type": "Circle", "center": [10.72660, 59.91040], "radius_m": 40}),
        DemoVenue("Fjordkaffe Grünerløkka", OSLO, "Olaf Ryes plass 2, 0552 Oslo",
                  {"type": "Circle", "center": [10.75830, 59.92270], "radius_m": 35}),
        DemoVenue("Fjordkaffe Oslo S", OSLO, "Jernbanetorget 1, 0154 Oslo",
                  {"type": "Polygon", "coordinates": [[[10.75120, 59.91050], [10.75380, 59.91050],
                                                       [10.75380, 59.91140], [10.75120, 59.91140],
                                                       [10.75120, 59.91050]]]}),
        DemoVenue("Fjordkaffe Nyhavn", COPENHAGEN, "Nyhavn 17, 1051 København K",
                  {"type": "Circle", "center": [12.59060, 55.67980], "radius_m": 40}),
        DemoVenue("Fjordkaffe Nørreport", COPENHAGEN, "Nørre Voldgade 13, 1358 København K",
                  {"type": "Polygon", "coordinates": [[[12.57080, 55.68300], [12.57220, 55.68300],
                                                       [12.57220, 55.68370], [12.57080, 55.68370],
                                                       [12.57080, 55.68300]]]}),
    ),
    campaign="Fjordkaffe autumn rewards",
    holdout_percent=15,
    offers=(
        _offer("10% off your coffee", "On any coffee, this visit.", {"type": "every_checkin"},
               per_user_limit=1000),
        _offer("Every 5th coffee free", "Your fifth visit since the campaign started is on us.",
               {"type": "nth_checkin", "n": 5}, per_user_limit=1000),
        _offer("Happy hour: 2-for-1 lattes", "Weekdays 15-17, local time.", {"type": "every_checkin"},
               per_user_limit=100, schedule={"weekdays": [1, 2, 3, 4, 5],
                                             "windows": [{"start": "15:00", "end": "17:00"}]}),
        _offer("Free pastry for the first 50", "Only for the campaign's first 50 guests.",
               {"type": "flash", "first_n": 50}),
    ),
)

BAKERY = DemoMerchant(
    id=uuid.UUID("0d3c0bae-0000-4000-8000-000000000002"),
    name="Kringle & Co.",
    venues=(
        DemoVenue("Kringle & Co. Majorstuen", OSLO, "Bogstadveien 55, 0366 Oslo",
                  {"type": "Circle", "center": [10.71500, 59.92930], "radius_m": 30}),
        DemoVenue("Kringle & Co. Vesterbro", COPENHAGEN, "Værnedamsvej 10, 1819 Frederiksberg C",
                  {"type": "Polygon", "coordinates": [[[12.54700, 55.67190], [12.54830, 55.67190],
                                                       [12.54830, 55.67250], [12.54700, 55.67250],
                                                       [12.54700, 55.67190]]]}),
        DemoVenue("Kringle & Co. Christianshavn", COPENHAGEN, "Torvegade 45, 1400 København K",
                  {"type": "Circle", "center": [12.59350, 55.67270], "radius_m": 30}),
    ),
    campaign="Kringle & Co. welcome",
    holdout_percent=20,
    offers=(
        _offer("Welcome: a free cinnamon bun", "For your first visit to any Kringle & Co.",
               {"type": "first_checkin"}),
        _offer("Third visit this week: a free loaf", "Check in three times within 7 days.",
               {"type": "loyalty", "visits": 3, "within_days": 7}, per_user_limit=100),
        _offer("Bring two friends: 3 buns for 2", "When three of you check in within 30 minutes.",
               {"type": "group", "min_people": 3, "within_minutes": 30}, per_user_limit=100),
    ),
)

MERCHANTS = (COFFEE, BAKERY)


async def _seed_merchant(session: AsyncSession, demo: DemoMerchant, now: datetime) -> None:
    # create_merchant draws a random id; the demo's is fixed (see the module docstring).
    session.add(Merchant(id=demo.id, name=demo.name))
    await session.flush()
    venue_ids = []
    for venue in demo.venues:
        created = await create_venue(session, demo.id, name=venue.name, timezone=venue.timezone,
                                     address=venue.address, geofence=parse_geofence(venue.geofence))
        venue_ids.append(created.id)
    starts_at = now.replace(hour=0, minute=0, second=0, microsecond=0)
    campaign = await create_campaign(session, demo.id, name=demo.campaign, venue_ids=venue_ids,
                                     starts_at=starts_at, ends_at=starts_at + timedelta(days=CAMPAIGN_DAYS),
                                     holdout_percent=demo.holdout_percent, attribution_days=14)
    for offer in demo.offers:
        schedule = Schedule.model_validate(offer["schedule"]) if offer["schedule"] else None
        await add_offer(session, demo.id, campaign.id, **{**offer, "rule": _RULE.validate_python(offer["rule"]),
                                                          "schedule": schedule})
    await transition(session, demo.id, campaign.id, "activate")


def _describe(demo: DemoMerchant) -> str:
    venues = ", ".join(f"{v.name.removeprefix(demo.name).strip()} ({v.timezone.split('/')[1]}, "
                       f"{v.geofence['type'].lower()})" for v in demo.venues)
    rules = ", ".join(o["rule"]["type"] + (" + schedule" if o["schedule"] else "") for o in demo.offers)
    return (f"  {demo.name} ({demo.id}): {venues}\n"
            f"    campaign '{demo.campaign}', active, holdout {demo.holdout_percent}%: {rules}")


def _try_it() -> str:
    settings = get_settings()
    try:
        app_token = mint_token(settings, sub="demo-user-1", role="app_user", ttl_s=TOKEN_TTL_S)
        admin_token = mint_token(settings, sub="demo-admin", role="merchant_admin", merchant_id=str(COFFEE.id),
                                 ttl_s=TOKEN_TTL_S)
    except RuntimeError as exc:
        return f"(no tokens printed: {exc})"
    lon, lat = COFFEE.venues[0].geofence["center"]
    return f"""Try it (tokens valid 24 h; more with `checkin-offers token`):
  export APP_TOKEN={app_token}
  export ADMIN_TOKEN={admin_token}   # merchant_admin of {COFFEE.name}
  curl -s http://127.0.0.1:8000/v1/checkins -H "Authorization: Bearer $APP_TOKEN" \\
    -H "Idempotency-Key: demo-$(date +%s)-$RANDOM" -H 'Content-Type: application/json' \\
    -d '{{"lat": {lat}, "lon": {lon}, "accuracy_m": 12, "observed_at": "'$(date -u +%Y-%m-%dT%H:%M:%SZ)'"}}'
  curl -s http://127.0.0.1:8000/v1/campaigns -H "Authorization: Bearer $ADMIN_TOKEN"
"""


async def seed_demo() -> None:
    """Create the demo merchants that are missing, in one transaction; print what was done."""
    try:
        async with get_sessionmaker()() as session, session.begin():
            ids = [demo.id for demo in MERCHANTS]
            existing = set(await session.scalars(select(Merchant.id).where(Merchant.id.in_(ids))))
            missing = [demo for demo in MERCHANTS if demo.id not in existing]
            now = datetime.now(UTC)
            for demo in missing:
                await _seed_merchant(session, demo, now)
    finally:
        # The command's event loop ends with this call: close the pool while it still runs.
        await get_engine().dispose()
    if missing:
        print("demo data created:")
        print("\n".join(_describe(demo) for demo in missing))
    else:
        print("demo data already present; nothing changed")
    print(_try_it(), end="")
