"""Small factories with readable defaults: merchants, venues, campaigns, users, check-ins."""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from core.auth import mint_token
from geo.timezones import offsets, zone_at


@dataclass
class Merchant:
    id: str
    admin: dict[str, str]
    staff: dict[str, str]
    marketer: dict[str, str]


class World:
    """Talks to the running service as any role; every test gets fresh tenants and users."""

    def __init__(self, http: httpx.Client, settings) -> None:
        self.http = http
        self.settings = settings
        self.rng = random.Random()

    def headers(self, role: str, sub: str | None = None, merchant_id: str | None = None) -> dict[str, str]:
        token = mint_token(
            self.settings, sub=sub or f"{role}-{uuid.uuid4().hex[:8]}", role=role, merchant_id=merchant_id
        )
        return {"Authorization": f"Bearer {token}"}

    def user(self, sub: str | None = None) -> dict[str, str]:
        return self.headers("app_user", sub or f"user-{uuid.uuid4().hex[:12]}")

    def merchant(self, name: str = "Kaffebrenneriet") -> Merchant:
        r = self.http.post("/v1/merchants", json={"name": name}, headers=self.headers("platform_admin"))
        assert r.status_code == 201, r.text
        mid = r.json()["id"]
        return Merchant(
            mid, *(self.headers(role, merchant_id=mid) for role in ("merchant_admin", "merchant_staff", "marketer"))
        )

    def spot(self) -> tuple[float, float]:
        """A random place on land-sized latitudes, far from every other test's venues."""
        return round(self.rng.uniform(-150, 150), 6), round(self.rng.uniform(-55, 65), 6)

    def spot_in(self, timezone: str) -> tuple[float, float]:
        """A random spot whose clock is the zone's (the service refuses a venue whose position
        keeps another time than its zone): land for a named zone, often sea for Etc/GMT±N."""
        now = datetime.now(UTC)
        wanted = offsets(timezone, now)
        for _ in range(200_000):
            # All longitudes: the sea zones of UTC+11/-11 and beyond lie outside spot()'s +-150.
            lon, lat = round(self.rng.uniform(-179.9, 179.9), 6), round(self.rng.uniform(-55, 65), 6)
            found = zone_at(lon, lat)
            if found is not None and offsets(found, now) == wanted:
                return lon, lat
        raise AssertionError(f"no spot found in {timezone}")

    def venue(
        self,
        merchant: Merchant,
        *,
        center: tuple[float, float] | None = None,
        radius_m: float = 50,
        geofence: dict | None = None,
        timezone: str | None = None,
        name: str = "Cafe",
    ) -> dict:
        """A venue at a random spot; without `timezone` the service takes the zone of the spot, with
        one (and no place given) the spot is somewhere keeping that zone's clock."""
        if center is None:
            center = self.spot_in(timezone) if timezone is not None and geofence is None else self.spot()
        lon, lat = center
        body = {
            "name": name,
            "geofence": geofence or {"type": "Circle", "center": [lon, lat], "radius_m": radius_m},
        }
        if timezone is not None:
            body["timezone"] = timezone
        r = self.http.post("/v1/venues", json=body, headers=merchant.admin)
        assert r.status_code == 201, r.text
        return r.json() | {"center": (lon, lat)}

    def campaign(
        self,
        merchant: Merchant,
        venue_ids: list[str],
        offers: list[dict] | None = None,
        *,
        holdout_percent: int = 0,
        attribution_days: int = 14,
        activate: bool = True,
        starts_at: datetime | None = None,
    ) -> dict:
        now = datetime.now(UTC)
        body = {
            "name": "Autumn",
            "venue_ids": venue_ids,
            "starts_at": (starts_at or now - timedelta(days=30)).isoformat(),
            "ends_at": (now + timedelta(days=30)).isoformat(),
            "holdout_percent": holdout_percent,
            "attribution_days": attribution_days,
        }
        r = self.http.post("/v1/campaigns", json=body, headers=merchant.admin)
        assert r.status_code == 201, r.text
        campaign = r.json()
        for offer in offers if offers is not None else [offer_body()]:
            r = self.http.post(f"/v1/campaigns/{campaign['id']}/offers", json=offer, headers=merchant.admin)
            assert r.status_code == 201, r.text
        if activate:
            r = self.http.post(f"/v1/campaigns/{campaign['id']}/activate", headers=merchant.admin)
            assert r.status_code == 200, r.text
        return self.http.get(f"/v1/campaigns/{campaign['id']}", headers=merchant.admin).json()

    def checkin(
        self,
        user: dict[str, str],
        lon: float,
        lat: float,
        *,
        accuracy_m: float = 10,
        observed_at: datetime | None = None,
        key: str | None = None,
        **extra,
    ) -> httpx.Response:
        body = {
            "lat": lat,
            "lon": lon,
            "accuracy_m": accuracy_m,
            "observed_at": (observed_at or datetime.now(UTC)).isoformat(),
            **extra,
        }
        return self.http.post("/v1/checkins", json=body, headers={**user, "Idempotency-Key": key or str(uuid.uuid4())})


def problem_apart_from_request(problem: dict) -> dict:
    """A problem body without what names the request (its path and request id): two answers that must
    be indistinguishable compare equal this way."""
    return {k: v for k, v in problem.items() if k not in ("instance", "request_id")}


def near(center: tuple[float, float], east_m: float = 0, north_m: float = 0) -> tuple[float, float]:
    """A point east_m / north_m metres from center (flat-earth, fine for tens of metres)."""
    lon, lat = center
    return lon + east_m / (111_320 * math.cos(math.radians(lat))), lat + north_m / 111_320


def new_user(world: World) -> tuple[str, dict[str, str]]:
    sub = f"user-{uuid.uuid4().hex[:12]}"
    return sub, world.user(sub)


def offer_body(rule: dict | None = None, **overrides) -> dict:
    return {
        "title": "Free cinnamon bun",
        "description": "With any coffee",
        "terms": "One per visit",
        "rule": rule or {"type": "every_checkin"},
        "per_user_limit": 100,
        "total_limit": 1000,
        "redeem_within_minutes": 60,
        **overrides,
    }


@pytest.fixture(scope="session")
def http(base_url: str):
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


@pytest.fixture
def world(http: httpx.Client, settings) -> World:
    return World(http, settings)
