"""The audit trail: every mutating route a merchant role can call, in the API and in the console,
records who changed what, when, and the resource before and after; the list is read off the
app's routes, so a new route fails here until it has a recipe (how to call it and the rows it must
record) or a justified exemption. GET /v1/audit shows a merchant's admin their own entries only,
a page at a time; the rows cannot be changed or deleted, and a webhook's secret never reaches them."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.routing import APIRoute

from api.console.session import csrf_token
from api.deps import auth_requirement
from api.main import app
from tests.browser import screenshot
from tests.factories import Merchant, World, offer_body
from tests.roles import MERCHANT_ROLES, app_routes
from tests.test_console_campaigns import expect_error_page

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
Route = tuple[str, str]  # (method, path template)

# Mutating routes a merchant role can call that record nothing in the audit trail, and why.
TILL = (
    "a redemption at the till is the sale itself, not a change to the merchant's setup: it is recorded "
    "where it happens, append-only, with the staff member's sub (redemptions, and the events table), and "
    "is the hot path (one statement)"
)
CORRESPONDENCE = (
    "customer correspondence, not a change to the merchant's setup: each reply keeps its author's sub "
    "in the conversation, and the conversation is the customer's data, which an erasure must be able to "
    "remove (an append-only copy would outlive it)"
)
EXEMPT: dict[Route, str] = {
    ("POST", "/v1/redemptions"): TILL,
    ("POST", "/dashboard/till/redeem"): TILL,
    ("POST", "/dashboard/till/lookup"): "reads a code's state: changes nothing",
    ("POST", "/dashboard/venues/fence-check"): "checks a fence being drawn: changes nothing",
    ("POST", "/dashboard/sign-in"): "starts a console session: no merchant data changes",
    ("POST", "/dashboard/sign-in/persona"): "starts a console session (demo personas): no merchant data changes",
    ("POST", "/dashboard/sign-out"): "ends a console session: no merchant data changes",
    ("POST", "/v1/conversations/{conversation_id}/messages"): CORRESPONDENCE,
    ("POST", "/v1/conversations/{conversation_id}/close"): CORRESPONDENCE,
    ("POST", "/v1/conversations/{conversation_id}/read"): "a read receipt: " + CORRESPONDENCE,
    ("POST", "/dashboard/conversations/{conversation_id:uuid}/reply"): CORRESPONDENCE,
    ("POST", "/dashboard/conversations/{conversation_id:uuid}/close"): CORRESPONDENCE,
}


def _merchant_can_call(route: Any) -> bool:
    """Unless its role checks admit no merchant role: public routes and the console's (which
    check the console session's role in the handler) count."""
    requirement = auth_requirement(route.dependant) if isinstance(route, APIRoute) else None
    if requirement is None:
        return True
    return any(all(role in roles for roles in requirement) for role in MERCHANT_ROLES)


def merchant_side_routes() -> set[Route]:
    """Every (method, path) of the app that changes something and that a merchant role can call."""
    return {
        (method, route.path)
        for route in app_routes(app)
        for method in route.methods & MUTATING
        if _merchant_can_call(route)
    }


# --------------------------------------------------------------------------- the scene a recipe runs in


@dataclass
class Row:
    """An audit row a recipe expects: before/after are compared as JSON, instants as instants."""

    action: str
    target_type: str
    target_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@dataclass
class Scene:
    world: World
    merchant: Merchant
    admin: dict[str, str]  # the admin whose sub the rows must name
    admin_sub: str
    venue: dict[str, Any]  # in the running campaign
    campaign: dict[str, Any]  # active, with one offer
    receiver_url: str
    settings: Any

    @property
    def http(self) -> httpx.Client:
        return self.world.http

    def api(self, method: str, path: str, expect: int, **kwargs: Any) -> Any:
        r = self.http.request(method, path, headers=self.admin, **kwargs)
        assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    def get(self, path: str) -> dict[str, Any]:
        result: dict[str, Any] = self.api("GET", path, 200)
        return result

    def form(self, path: str, data: dict[str, Any], expect: int = 303) -> httpx.Response:
        """A console form posted as the signed-in admin, with the session's CSRF token."""
        token = self.admin["Authorization"].removeprefix("Bearer ")
        headers = {**self.admin, "X-CSRF-Token": csrf_token(token, self.settings)}
        r = self.http.post(path, data=data, headers=headers, follow_redirects=False)
        assert r.status_code == expect, f"POST {path}: {r.status_code} {r.text[:500]}"
        return r

    def draft(self, *, with_offer: bool = True) -> dict[str, Any]:
        return self.world.campaign(self.merchant, [self.venue["id"]], offers=None if with_offer else [], activate=False)

    def spare_venue(self) -> dict[str, Any]:
        return self.world.venue(self.merchant, name="Spare")

    def webhook(self) -> dict[str, Any]:
        made: dict[str, Any] = self.api(
            "POST", "/v1/webhooks", 201, json={"url": self.receiver_url, "events": ["offer_unlocked"]}
        )
        return made

    def redemption(self) -> dict[str, Any]:
        r = self.world.checkin(self.world.user(), *self.venue["center"])
        assert r.status_code == 201 and r.json()["unlocked"], r.text
        code = r.json()["unlocked"][0]["code"]
        body = {"code": code, "venue_id": self.venue["id"]}
        r = self.http.post("/v1/redemptions", json=body, headers=self.merchant.staff)
        assert r.status_code == 201, r.text
        return r.json()

    def delivery(self, endpoint: dict[str, Any]) -> dict[str, Any]:
        """A delivery to the endpoint: a check-in unlocks, the worker makes the delivery."""
        r = self.world.checkin(self.world.user(), *self.venue["center"])
        assert r.status_code == 201, r.text
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            items = self.get(f"/v1/webhooks/{endpoint['id']}/deliveries")["items"]
            if items and items[0]["status"] != "pending":
                return dict(items[0])
            time.sleep(0.2)
        raise AssertionError("no settled delivery within 15 s")


# A recipe sets up what the call needs and returns (the call, the rows it must record given its
# result); rows recorded by the setup are not counted.
Recipe = Callable[[Scene], tuple[Callable[[], Any], Callable[[Any], list[Row]]]]
RECIPES: dict[Route, list[Recipe]] = {}


def recipe(method: str, path: str) -> Callable[[Recipe], Recipe]:
    def register(make: Recipe) -> Recipe:
        RECIPES.setdefault((method, path), []).append(make)
        return make

    return register


def _venue_body(world: World, name: str = "Pier") -> dict[str, Any]:
    lon, lat = world.spot()
    return {"name": name, "geofence": {"type": "Circle", "center": [lon, lat], "radius_m": 40}}


def _campaign_body(venue_id: str, name: str = "Winter") -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "name": name,
        "venue_ids": [venue_id],
        "starts_at": (now - timedelta(days=1)).isoformat(),
        "ends_at": (now + timedelta(days=20)).isoformat(),
        "holdout_percent": 10,
        "attribution_days": 14,
    }


def _local(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M")


# --------------------------------------------------------------------------- recipes: the API


@recipe("POST", "/v1/venues")
def _create_venue(s: Scene):
    body = _venue_body(s.world)

    def do():
        return s.api("POST", "/v1/venues", 201, json=body)

    return do, lambda made: [Row("venue.created", "venue", made["id"], None, made)]


@recipe("PATCH", "/v1/venues/{venue_id}")
def _update_venue(s: Scene):
    before = s.get(f"/v1/venues/{s.venue['id']}")

    def do():
        return s.api("PATCH", f"/v1/venues/{s.venue['id']}", 200, json={"name": "Renamed", "address": "Quay 1"})

    return do, lambda after: [Row("venue.updated", "venue", s.venue["id"], before, after)]


@recipe("DELETE", "/v1/venues/{venue_id}")
def _delete_venue(s: Scene):
    venue = s.spare_venue()
    before = s.get(f"/v1/venues/{venue['id']}")
    return (
        lambda: s.api("DELETE", f"/v1/venues/{venue['id']}", 204),
        lambda _: [Row("venue.deleted", "venue", venue["id"], before, None)],
    )


@recipe("POST", "/v1/campaigns")
def _create_campaign(s: Scene):
    body = _campaign_body(s.venue["id"])
    return (
        lambda: s.api("POST", "/v1/campaigns", 201, json=body),
        lambda made: [Row("campaign.created", "campaign", made["id"], None, made)],
    )


@recipe("PATCH", "/v1/campaigns/{campaign_id}")
def _update_campaign(s: Scene):
    draft = s.draft()
    before = s.get(f"/v1/campaigns/{draft['id']}")
    return (
        lambda: s.api("PATCH", f"/v1/campaigns/{draft['id']}", 200, json={"name": "Spring", "holdout_percent": 20}),
        lambda after: [Row("campaign.updated", "campaign", draft["id"], before, after)],
    )


@recipe("DELETE", "/v1/campaigns/{campaign_id}")
def _delete_campaign(s: Scene):
    draft = s.draft()
    before = s.get(f"/v1/campaigns/{draft['id']}")
    return (
        lambda: s.api("DELETE", f"/v1/campaigns/{draft['id']}", 204),
        lambda _: [Row("campaign.deleted", "campaign", draft["id"], before, None)],
    )


@recipe("POST", "/v1/campaigns/{campaign_id}/offers")
def _add_offer(s: Scene):
    draft = s.draft(with_offer=False)
    return (
        lambda: s.api("POST", f"/v1/campaigns/{draft['id']}/offers", 201, json=offer_body()),
        lambda made: [Row("offer.created", "offer", made["id"], None, made)],
    )


def _transition(action: str, verb: str, start: str) -> Recipe:
    def make(s: Scene):
        campaign = s.draft()
        if start != "draft":
            s.api("POST", f"/v1/campaigns/{campaign['id']}/activate", 200)
        before = s.get(f"/v1/campaigns/{campaign['id']}")
        return (
            lambda: s.api("POST", f"/v1/campaigns/{campaign['id']}/{action}", 200),
            lambda after: [Row(f"campaign.{verb}", "campaign", campaign["id"], before, after)],
        )

    return make


recipe("POST", "/v1/campaigns/{campaign_id}/activate")(_transition("activate", "activated", "draft"))
recipe("POST", "/v1/campaigns/{campaign_id}/pause")(_transition("pause", "paused", "active"))
recipe("POST", "/v1/campaigns/{campaign_id}/end")(_transition("end", "ended", "active"))


@recipe("PATCH", "/v1/offers/{offer_id}")
def _update_offer(s: Scene):
    offer_id = s.campaign["offers"][0]["id"]
    before = s.get(f"/v1/offers/{offer_id}")
    return (
        lambda: s.api("PATCH", f"/v1/offers/{offer_id}", 200, json={"title": "Two buns", "status": "paused"}),
        lambda after: [Row("offer.updated", "offer", offer_id, before, after)],
    )


@recipe("POST", "/v1/redemptions/{redemption_id}/void")
def _void(s: Scene):
    redeemed = s.redemption()

    def rows(voided: dict[str, Any]) -> list[Row]:
        before = voided | {"voided_at": None, "void_reason": None}
        return [Row("redemption.voided", "redemption", redeemed["id"], before, voided)]

    return lambda: s.api("POST", f"/v1/redemptions/{redeemed['id']}/void", 200, json={"reason": "wrong code"}), rows


def _without_secret(made: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in made.items() if k != "secret"}


@recipe("POST", "/v1/webhooks")
def _create_webhook(s: Scene):
    body = {"url": s.receiver_url, "events": ["offer_unlocked", "srm_alert"]}
    return (
        lambda: s.api("POST", "/v1/webhooks", 201, json=body),
        lambda made: [Row("webhook.created", "webhook", made["id"], None, _without_secret(made))],
    )


def _listed_webhook(s: Scene, endpoint_id: str) -> dict[str, Any]:
    return next(w for w in s.get("/v1/webhooks")["items"] if w["id"] == endpoint_id)


@recipe("DELETE", "/v1/webhooks/{webhook_id}")
def _delete_webhook(s: Scene):
    endpoint = s.webhook()
    before = _listed_webhook(s, endpoint["id"])
    return (
        lambda: s.api("DELETE", f"/v1/webhooks/{endpoint['id']}", 204),
        lambda _: [Row("webhook.deleted", "webhook", endpoint["id"], before, None)],
    )


@recipe("POST", "/v1/webhooks/{webhook_id}/enable")
def _enable_webhook(s: Scene):
    endpoint = s.webhook()
    before = _listed_webhook(s, endpoint["id"])
    return (
        lambda: s.api("POST", f"/v1/webhooks/{endpoint['id']}/enable", 200),
        lambda after: [Row("webhook.enabled", "webhook", endpoint["id"], before, after)],
    )


@recipe("POST", "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver")
def _redeliver(s: Scene):
    endpoint = s.webhook()
    delivery = s.delivery(endpoint)
    path = f"/v1/webhooks/{endpoint['id']}/deliveries/{delivery['id']}/redeliver"
    return (
        lambda: s.api("POST", path, 202),
        lambda again: [Row("webhook_delivery.redelivered", "webhook_delivery", delivery["id"], None, again)],
    )


# --------------------------------------------------------------------------- recipes: the console


def _venue_form(world: World, name: str) -> dict[str, str]:
    lon, lat = world.spot()
    return {
        "name": name,
        "address": "",
        "timezone": "",
        "geofence": f'{{"type": "Circle", "center": [{lon}, {lat}], "radius_m": 40}}',
    }


def _redirected_id(response: httpx.Response, prefix: str) -> str:
    return response.headers["location"].removeprefix(prefix).split("/")[0].split("?")[0]


@recipe("POST", "/dashboard/venues/new")
def _console_create_venue(s: Scene):
    def do():
        venue_id = _redirected_id(s.form("/dashboard/venues/new", _venue_form(s.world, "Stall")), "/dashboard/venues/")
        return s.get(f"/v1/venues/{venue_id}")

    return do, lambda made: [Row("venue.created", "venue", made["id"], None, made)]


@recipe("POST", "/dashboard/venues/{venue_id}/edit")
def _console_update_venue(s: Scene):
    venue = s.spare_venue()
    before = s.get(f"/v1/venues/{venue['id']}")
    form = {
        "name": "Kiosk",
        "address": "Dock 2",
        "timezone": before["timezone"],
        "geofence": str(before["geofence"]).replace("'", '"'),
    }

    def do():
        s.form(f"/dashboard/venues/{venue['id']}/edit", form)
        return s.get(f"/v1/venues/{venue['id']}")

    return do, lambda after: [Row("venue.updated", "venue", venue["id"], before, after)]


def _campaign_form(s: Scene, name: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "name": name,
        "venue_ids": [s.venue["id"]],
        "timezone": "UTC",
        "starts_at": _local(now + timedelta(days=1)),
        "ends_at": _local(now + timedelta(days=9)),
        "holdout_percent": "10",
        "attribution_days": "14",
    }


@recipe("POST", "/dashboard/campaigns/new")
def _console_create_campaign(s: Scene):
    def do():
        r = s.form("/dashboard/campaigns/new", _campaign_form(s, "Console"))
        return s.get(f"/v1/campaigns/{_redirected_id(r, '/dashboard/campaigns/')}")

    return do, lambda made: [Row("campaign.created", "campaign", made["id"], None, made)]


@recipe("POST", "/dashboard/campaigns/{campaign_id}/edit")
def _console_update_campaign(s: Scene):
    draft = s.draft()
    before = s.get(f"/v1/campaigns/{draft['id']}")

    def do():
        s.form(f"/dashboard/campaigns/{draft['id']}/edit", _campaign_form(s, "Edited"))
        return s.get(f"/v1/campaigns/{draft['id']}")

    return do, lambda after: [Row("campaign.updated", "campaign", draft["id"], before, after)]


def _console_action(action: str, verb: str, start: str) -> Recipe:
    def make(s: Scene):
        campaign = s.draft()
        if start == "active":
            s.api("POST", f"/v1/campaigns/{campaign['id']}/activate", 200)
        before = s.get(f"/v1/campaigns/{campaign['id']}")

        def do():
            s.form(f"/dashboard/campaigns/{campaign['id']}/{action}", {"back": "list"})
            if action == "delete":
                return None
            return s.get(f"/v1/campaigns/{campaign['id']}")

        return do, lambda after: [Row(f"campaign.{verb}", "campaign", campaign["id"], before, after)]

    return make


for _action, _verb, _start in (
    ("activate", "activated", "draft"),
    ("pause", "paused", "active"),
    ("end", "ended", "active"),
    ("delete", "deleted", "draft"),
):
    recipe("POST", "/dashboard/campaigns/{campaign_id}/{action}")(_console_action(_action, _verb, _start))


@recipe("POST", "/dashboard/campaigns/{campaign_id}/offers/new")
def _console_add_offer(s: Scene):
    draft = s.draft(with_offer=False)
    form = {
        "title": "Free tea",
        "description": "Any size",
        "terms": "One per visit",
        "rule_type": "every_checkin",
        "schedule.weekdays": [str(day) for day in range(1, 8)],
        "per_user_limit": "5",
        "total_limit": "100",
        "redeem_within_minutes": "30",
    }

    def do():
        s.form(f"/dashboard/campaigns/{draft['id']}/offers/new", form)
        (offer,) = s.get(f"/v1/campaigns/{draft['id']}")["offers"]
        return offer

    return do, lambda made: [Row("offer.created", "offer", made["id"], None, made)]


@recipe("POST", "/dashboard/campaigns/{campaign_id}/offers/{offer_id}/edit")
def _console_update_offer(s: Scene):
    offer_id = s.campaign["offers"][0]["id"]
    before = s.get(f"/v1/offers/{offer_id}")

    def do():
        s.form(f"/dashboard/campaigns/{s.campaign['id']}/offers/{offer_id}/edit", {"title": "Bigger bun"})
        return s.get(f"/v1/offers/{offer_id}")

    return do, lambda after: [Row("offer.updated", "offer", offer_id, before, after)]


@recipe("POST", "/dashboard/campaigns/{campaign_id}/offers/{offer_id}/status")
def _console_offer_status(s: Scene):
    offer_id = s.campaign["offers"][0]["id"]
    before = s.get(f"/v1/offers/{offer_id}")

    def do():
        s.form(f"/dashboard/campaigns/{s.campaign['id']}/offers/{offer_id}/status", {"status": "paused"})
        return s.get(f"/v1/offers/{offer_id}")

    return do, lambda after: [Row("offer.updated", "offer", offer_id, before, after)]


@recipe("POST", "/dashboard/till/void")
def _console_void(s: Scene):
    redeemed = s.redemption()

    def do():
        form = {"venue_id": s.venue["id"], "redemption_id": redeemed["id"], "reason": "typed the wrong code"}
        s.form("/dashboard/till/void", form, expect=200)
        page = s.get(f"/v1/redemptions?venue_id={s.venue['id']}")["items"]
        return next(item for item in page if item["id"] == redeemed["id"])

    def rows(listed: dict[str, Any]) -> list[Row]:
        assert listed["voided_at"] is not None
        after = {
            "id": redeemed["id"],
            "unlock_id": redeemed["unlock_id"],
            "offer_id": redeemed["offer_id"],
            "venue_id": redeemed["venue_id"],
            "redeemed_at": redeemed["redeemed_at"],
            "voided_at": listed["voided_at"],
            "void_reason": "typed the wrong code",
        }
        return [
            Row(
                "redemption.voided",
                "redemption",
                redeemed["id"],
                after | {"voided_at": None, "void_reason": None},
                after,
            )
        ]

    return do, rows


@recipe("POST", "/dashboard/webhooks")
def _console_create_webhook(s: Scene):
    def do():
        s.form("/dashboard/webhooks", {"url": s.receiver_url, "events": ["offer_redeemed"]}, expect=200)
        (made,) = s.get("/v1/webhooks")["items"]
        return made

    return do, lambda made: [Row("webhook.created", "webhook", made["id"], None, made)]


@recipe("POST", "/dashboard/webhooks/{endpoint_id}/delete")
def _console_delete_webhook(s: Scene):
    endpoint = s.webhook()
    before = _listed_webhook(s, endpoint["id"])
    return (
        lambda: s.form(f"/dashboard/webhooks/{endpoint['id']}/delete", {}),
        lambda _: [Row("webhook.deleted", "webhook", endpoint["id"], before, None)],
    )


@recipe("POST", "/dashboard/webhooks/{endpoint_id}/enable")
def _console_enable_webhook(s: Scene):
    endpoint = s.webhook()
    before = _listed_webhook(s, endpoint["id"])

    def do():
        s.form(f"/dashboard/webhooks/{endpoint['id']}/enable", {})
        return _listed_webhook(s, endpoint["id"])

    return do, lambda after: [Row("webhook.enabled", "webhook", endpoint["id"], before, after)]


@recipe("POST", "/dashboard/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver")
def _console_redeliver(s: Scene):
    endpoint = s.webhook()
    delivery = s.delivery(endpoint)

    def do():
        s.form(f"/dashboard/webhooks/{endpoint['id']}/deliveries/{delivery['id']}/redeliver", {}, expect=200)
        return None

    def rows(_: Any) -> list[Row]:
        return [Row("webhook_delivery.redelivered", "webhook_delivery", delivery["id"], None, {"id": delivery["id"]})]

    return do, rows


# --------------------------------------------------------------------------- the generated test


def _instants(value: Any) -> Any:
    """JSON with every ISO instant as a datetime: the API writes UTC as Z, PostgreSQL as +00:00."""
    if isinstance(value, dict):
        return {k: _instants(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_instants(v) for v in value]
    if isinstance(value, str) and len(value) >= 19 and value[4:5] == "-" and value[10:11] == "T":
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def _rows_of(db: psycopg.Connection, merchant_id: str) -> list[dict[str, Any]]:
    return db.execute("SELECT * FROM audit_log WHERE merchant_id = %s ORDER BY at, id", (merchant_id,)).fetchall()


@pytest.fixture
def scene(world, settings, receiver) -> Scene:
    merchant = world.merchant("Audited")
    sub = f"audit-admin-{uuid.uuid4().hex[:8]}"
    admin = world.headers("merchant_admin", sub=sub, merchant_id=merchant.id)
    merchant.admin = admin
    venue = world.venue(merchant, name="Harbour")
    campaign = world.campaign(merchant, [venue["id"]])
    return Scene(world, merchant, admin, sub, venue, campaign, receiver.url, settings)


def _cases() -> Iterator[Any]:
    for route in sorted(merchant_side_routes()):
        if route in EXEMPT:
            continue
        makes = RECIPES.get(route) or [None]
        for n, make in enumerate(makes):
            yield pytest.param(route, make, id=f"{route[0]} {route[1]}" + (f" #{n + 1}" if len(makes) > 1 else ""))


@pytest.mark.parametrize(("route", "make"), list(_cases()))
def test_every_mutating_merchant_route_records_exactly_its_audit_rows(route, make, scene, db):
    assert make is not None, (
        f"{route[0]} {route[1]} changes something a merchant can call and has no audit recipe here: record it "
        "(api/audited.py) and add a recipe, or exempt it in EXEMPT with the reason"
    )
    do, expected_rows = make(scene)
    seen = {row["id"] for row in _rows_of(db, scene.merchant.id)}
    result = do()
    new = [row for row in _rows_of(db, scene.merchant.id) if row["id"] not in seen]
    expected = expected_rows(result)
    assert [(r["action"], r["target_type"], r["target_id"]) for r in new] == [
        (e.action, e.target_type, e.target_id) for e in expected
    ]
    for row, want in zip(new, expected, strict=True):
        assert (row["actor_sub"], row["actor_role"]) == (scene.admin_sub, "merchant_admin")
        assert row["request_id"], "the request's X-Request-ID"
        assert _instants(row["before"]) == _instants(want.before)
        if want.action == "webhook_delivery.redelivered":  # its attempts move on: the delivery it names
            assert row["after"]["id"] == want.target_id and row["after"]["status"] == "pending"
        else:
            assert _instants(row["after"]) == _instants(want.after)
        assert "secret" not in str(row["before"]) + str(row["after"])


def test_every_recipe_and_exemption_names_a_route_that_exists():
    routes = merchant_side_routes()
    assert not set(RECIPES) - routes, "recipes for routes that are gone"
    assert not set(EXEMPT) - routes, "exemptions for routes that are gone"
    assert not set(RECIPES) & set(EXEMPT)
    assert all(len(reason) > 20 for reason in EXEMPT.values())


# --------------------------------------------------------------------------- reading it


def test_an_admin_pages_through_their_own_entries_newest_first(scene):
    s = scene
    made = [s.api("POST", "/v1/venues", 201, json=_venue_body(s.world, f"Stand {n}")) for n in range(3)]
    s.api("PATCH", f"/v1/venues/{made[0]['id']}", 200, json={"name": "Stand zero"})
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = s.get("/v1/audit?limit=2" + (f"&cursor={cursor}" if cursor else ""))
        assert len(page["items"]) <= 2
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [e["at"] for e in seen] == sorted((e["at"] for e in seen), reverse=True)
    assert len({e["id"] for e in seen}) == len(seen)
    assert seen[0]["action"] == "venue.updated" and seen[0]["before"]["name"] == "Stand 0"
    assert seen[0]["after"]["name"] == "Stand zero" and seen[0]["actor_sub"] == s.admin_sub
    assert [e["action"] for e in seen[1:4]] == ["venue.created"] * 3

    only = s.get(f"/v1/audit?target_type=venue&target_id={made[0]['id']}")["items"]
    assert [e["action"] for e in only] == ["venue.updated", "venue.created"]
    r = s.http.get("/v1/audit?cursor=not-a-cursor", headers=s.admin)
    assert (r.status_code, r.json()["errors"][0]["code"]) == (422, "invalid_cursor")


def test_another_merchant_sees_none_of_it_and_other_roles_are_refused(scene, world):
    s = scene
    s.api("POST", "/v1/venues", 201, json=_venue_body(s.world))
    other = world.merchant("Elsewhere")
    r = world.http.get("/v1/audit", headers=other.admin)
    assert r.status_code == 200 and r.json()["items"] == []
    venue_id = s.venue["id"]
    r = world.http.get(f"/v1/audit?target_id={venue_id}", headers=other.admin)
    assert r.status_code == 200 and r.json()["items"] == []
    for role in ("staff", "marketer"):
        r = world.http.get("/v1/audit", headers=getattr(s.merchant, role))
        assert r.status_code == 403, role
    assert world.http.get("/v1/audit", headers=world.user()).status_code == 403
    assert world.http.get("/v1/audit").status_code == 401


def test_rows_can_be_neither_changed_nor_deleted(scene, db):
    s = scene
    s.api("POST", "/v1/venues", 201, json=_venue_body(s.world))
    for statement in (
        "UPDATE audit_log SET actor_sub = 'someone else' WHERE merchant_id = %s",
        "DELETE FROM audit_log WHERE merchant_id = %s",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            db.execute(statement, (s.merchant.id,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        db.execute("TRUNCATE audit_log")
    assert _rows_of(db, s.merchant.id)


def test_a_webhook_secret_never_reaches_the_audit(scene, db):
    s = scene
    made = s.webhook()
    assert made["secret"].startswith("whsec_")
    s.form("/dashboard/webhooks", {"url": s.receiver_url, "events": ["srm_alert"]}, expect=200)
    rows = db.execute(
        "SELECT concat(before::text, after::text) AS values FROM audit_log WHERE merchant_id = %s",
        (s.merchant.id,),
    ).fetchall()
    assert rows and all("whsec_" not in row["values"] for row in rows)


def test_a_refused_change_records_nothing(scene, db):
    s = scene
    seen = len(_rows_of(db, s.merchant.id))
    r = s.http.delete(f"/v1/venues/{s.venue['id']}", headers=s.admin)  # in a running campaign: 409
    assert r.status_code == 409
    r = s.http.post(f"/v1/campaigns/{s.campaign['id']}/activate", headers=s.admin)  # already active
    assert r.status_code == 409
    form = {"back": "list"}
    token = s.admin["Authorization"].removeprefix("Bearer ")
    r = s.http.post(
        f"/dashboard/campaigns/{s.campaign['id']}/activate",
        data=form,
        headers={**s.admin, "X-CSRF-Token": csrf_token(token, s.settings)},
    )
    assert r.status_code == 409
    assert len(_rows_of(db, s.merchant.id)) == seen


def test_redaction_reaches_any_depth():
    from offers.audit import REDACTED, redacted

    assert redacted({"secret": "whsec_x", "inner": [{"secret": "y", "url": "https://a"}]}) == {
        "secret": REDACTED,
        "inner": [{"secret": REDACTED, "url": "https://a"}],
    }


# --------------------------------------------------------------------------- the console page


def test_the_console_shows_who_changed_what_with_a_before_and_after(console, scene, world):
    s = scene
    s.api("PATCH", f"/v1/venues/{s.venue['id']}", 200, json={"name": "Harbour kiosk"})
    s.api("POST", f"/v1/campaigns/{s.campaign['id']}/pause", 200)
    s.webhook()
    page = console.page(s.admin)
    page.goto("/dashboard/audit")
    rows = page.locator("table.audit > tbody > tr")
    assert rows.first.get_attribute("data-action") == "webhook.created"
    paused = page.locator("table.audit > tbody > tr[data-action='campaign.paused']")
    assert "status" in paused.inner_text() and "active" in paused.inner_text() and "paused" in paused.inner_text()
    renamed = page.locator("table.audit > tbody > tr[data-action='venue.updated']")
    assert renamed.locator("del").first.inner_text() == "Harbour" and "Harbour kiosk" in renamed.inner_text()
    assert s.admin_sub in renamed.inner_text()
    assert "whsec_" not in page.content()
    screenshot(page, "console-audit")

    renamed.locator("a.target").click()  # that venue's changes only
    page.wait_for_url("**target_id=*")
    assert {r.get_attribute("data-action") for r in page.locator("table.audit > tbody > tr").all()} == {
        "venue.created",
        "venue.updated",
    }
    page = console.page(s.merchant.marketer)
    page.goto("/dashboard/audit")
    expect_error_page(console, page, 403)
    assert page.locator("h1").inner_text() != "Audit"
    assert page.locator("nav a", has_text="Audit").count() == 0


def test_the_console_page_ignores_a_hand_edited_link(scene):
    s = scene
    for query in ("cursor=%00", "cursor=bm90LWEtY3Vyc29y", "target_type=%00x", "target_id=nope", "target_type=venue"):
        r = s.http.get(f"/dashboard/audit?{query}", headers=s.admin)
        assert r.status_code == 200 and 'table class="audit"' in r.text, query
