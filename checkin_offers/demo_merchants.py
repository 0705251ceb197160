"""The demo merchants, as data: a coffee chain and a bakery in Oslo and Copenhagen.

Each merchant has venues in both cities (circles and polygons around real places) and one campaign
whose offers show the rules: every check-in, first visit, every n-th visit, loyalty, flash "first N",
group and a happy-hour schedule. `demo` seeds them into the database; `simulate` drives traffic at
them, finding them by their fixed ids.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

OSLO = "Europe/Oslo"
COPENHAGEN = "Europe/Copenhagen"


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
    attribution_days: int
    offers: tuple[dict[str, Any], ...]  # add_offer's keyword arguments, rule and schedule as JSON


def _offer(
    title: str,
    description: str,
    rule: dict[str, Any],
    *,
    per_user_limit: int = 1,
    total_limit: int = 1_000_000,
    redeem_within_minutes: int = 120,
    schedule: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "title": title,
        "description": description,
        "terms": "One per check-in; not combinable.",
        "rule": rule,
        "schedule": schedule,
        "per_user_limit": per_user_limit,
        "total_limit": total_limit,
        "redeem_within_minutes": redeem_within_minutes,
    }


COFFEE = DemoMerchant(
    id=uuid.UUID("0d3c0ffe-0000-4000-8000-000000000001"),
    name="Fjordkaffe",
    venues=(
        DemoVenue(
            "Fjordkaffe Aker Brygge",
            OSLO,
            "Stranden 3, 0250 Oslo",
            {"type": "Circle", "center": [10.72660, 59.91040], "radius_m": 40},
        ),
        DemoVenue(
            "Fjordkaffe Grünerløkka",
            OSLO,
            "Olaf Ryes plass 2, 0552 Oslo",
            {"type": "Circle", "center": [10.75830, 59.92270], "radius_m": 35},
        ),
        DemoVenue(
            "Fjordkaffe Oslo S",
            OSLO,
            "Jernbanetorget 1, 0154 Oslo",
            {
                "type": "Polygon",
                "coordinates": [
                    [
                        [10.75120, 59.91050],
                        [10.75380, 59.91050],
                        [10.75380, 59.91140],
                        [10.75120, 59.91140],
                        [10.75120, 59.91050],
                    ]
                ],
            },
        ),
        DemoVenue(
            "Fjordkaffe Nyhavn",
            COPENHAGEN,
            "Nyhavn 17, 1051 København K",
            {"type": "Circle", "center": [12.59060, 55.67980], "radius_m": 40},
        ),
        DemoVenue(
            "Fjordkaffe Nørreport",
            COPENHAGEN,
            "Nørre Voldgade 13, 1358 København K",
            {
                "type": "Polygon",
                "coordinates": [
                    [
                        [12.57080, 55.68300],
                        [12.57220, 55.68300],
                        [12.57220, 55.68370],
                        [12.57080, 55.68370],
                        [12.57080, 55.68300],
                    ]
                ],
            },
        ),
    ),
    campaign="Fjordkaffe autumn rewards",
    holdout_percent=15,
    attribution_days=1,  # did the offer bring them back for another coffee within a day?
    offers=(
        _offer("10% off your coffee", "On any coffee, this visit.", {"type": "every_checkin"}, per_user_limit=1000),
        _offer(
            "Every 5th coffee free",
            "Your fifth visit since the campaign started is on us.",
            {"type": "nth_checkin", "n": 5},
            per_user_limit=1000,
        ),
        _offer(
            "Happy hour: 2-for-1 lattes",
            "Weekdays 15-17, local time.",
            {"type": "every_checkin"},
            per_user_limit=100,
            schedule={"weekdays": [1, 2, 3, 4, 5], "windows": [{"start": "15:00", "end": "17:00"}]},
        ),
        _offer(
            "Free pastry for the first 50", "Only for the campaign's first 50 guests.", {"type": "flash", "first_n": 50}
        ),
    ),
)

BAKERY = DemoMerchant(
    id=uuid.UUID("0d3c0bae-0000-4000-8000-000000000002"),
    name="Kringle & Co.",
    venues=(
        DemoVenue(
            "Kringle & Co. Majorstuen",
            OSLO,
            "Bogstadveien 55, 0366 Oslo",
            {"type": "Circle", "center": [10.71500, 59.92930], "radius_m": 30},
        ),
        DemoVenue(
            "Kringle & Co. Vesterbro",
            COPENHAGEN,
            "Værnedamsvej 10, 1819 Frederiksberg C",
            {
                "type": "Polygon",
                "coordinates": [
                    [
                        [12.54700, 55.67190],
                        [12.54830, 55.67190],
                        [12.54830, 55.67250],
                        [12.54700, 55.67250],
                        [12.54700, 55.67190],
                    ]
                ],
            },
        ),
        DemoVenue(
            "Kringle & Co. Christianshavn",
            COPENHAGEN,
            "Torvegade 45, 1400 København K",
            {"type": "Circle", "center": [12.59350, 55.67270], "radius_m": 30},
        ),
    ),
    campaign="Kringle & Co. welcome",
    holdout_percent=20,
    attribution_days=1,
    offers=(
        _offer("Welcome: a free cinnamon bun", "For your first visit to any Kringle & Co.", {"type": "first_checkin"}),
        _offer(
            "Third visit this week: a free loaf",
            "Check in three times within 7 days.",
            {"type": "loyalty", "visits": 3, "within_days": 7},
            per_user_limit=100,
        ),
        _offer(
            "Bring two friends: 3 buns for 2",
            "When three of you check in within 30 minutes.",
            {"type": "group", "min_people": 3, "within_minutes": 30},
            per_user_limit=100,
        ),
    ),
)

MERCHANTS = (COFFEE, BAKERY)
