"""The event record: append-only, one event per state change, written in the same
transaction as the state, never for a failed request and never twice for a retry."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

ALL_TYPES = {
    "checkin_accepted",
    "checkin_rejected",
    "exposure",
    "offer_unlocked",
    "offer_redeemed",
    "redemption_voided",
}


def users_in_arm(db, campaign: dict, arm: str, n: int) -> list[str]:
    """User ids the campaign's deterministic assignment puts in `arm`."""
    row = db.execute(
        "SELECT assignment_salt, holdout_percent FROM campaigns WHERE id = %s", [campaign["id"]]
    ).fetchone()
    found = []
    while len(found) < n:
        user = f"user-{uuid.uuid4().hex[:12]}"
        bucket = db.execute("SELECT assignment_bucket(%s, %s) AS b", [row["assignment_salt"], user]).fetchone()["b"]
        if (bucket < row["holdout_percent"] * 100) == (arm == "control"):
            found.append(user)
    return found


def campaign_events(db, campaign_id: str) -> list[dict]:
    return db.execute("SELECT * FROM events WHERE campaign_id = %s ORDER BY id", [campaign_id]).fetchall()


def redeem(world, headers, code, venue_id, key=None):
    extra = {"Idempotency-Key": key} if key else {}
    return world.http.post("/v1/redemptions", json={"code": code, "venue_id": venue_id}, headers={**headers, **extra})


def near(center: tuple[float, float], metres_east: float) -> tuple[float, float]:
    lon, lat = center
    return lon + metres_east / (111_320 * math.cos(math.radians(lat))), lat


@pytest.fixture
def scene(world, db):
    """A campaign with a 50% holdout at two venues, and users known to be in each arm."""
    m = world.merchant()
    a = world.venue(m, name="Storgata")
    b = world.venue(m, name="Torget", center=near(a["center"], 200))  # a short walk away
    campaign = world.campaign(m, [a["id"], b["id"]], holdout_percent=50)
    treated = users_in_arm(db, campaign, "treatment", 3)
    control = users_in_arm(db, campaign, "control", 2)
    return m, a, b, campaign, treated, control


def test_events_cannot_be_changed_or_erased(db, world):
    m = world.merchant()
    v = world.venue(m)
    assert world.checkin(world.user(), *v["center"]).status_code == 201
    event_id = db.execute("SELECT max(id) AS id FROM events").fetchone()["id"]

    for statement in ("UPDATE events SET reason = 'edited' WHERE id = %s", "DELETE FROM events WHERE id = %s"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            db.execute(statement, [event_id])
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        db.execute("TRUNCATE events")
    assert db.execute("SELECT reason FROM events WHERE id = %s", [event_id]).fetchone() == {"reason": None}


def test_every_state_change_has_its_one_event(world, db, scene):
    m, a, b, campaign, (t1, t2, t3), (c1, c2) = scene
    now = datetime.now(UTC)
    headers = {u: world.user(u) for u in (t1, t2, t3, c1, c2)}

    codes = {}
    for user in (t1, t2, c1):
        r = world.checkin(headers[user], *a["center"], observed_at=now - timedelta(minutes=9))
        assert r.json()["status"] == "accepted", r.text
        codes[user] = [u["code"] for u in r.json()["unlocked"]]
    assert codes[c1] == [] and len(codes[t1]) == len(codes[t2]) == 1  # the holdout never unlocks
    assert world.checkin(headers[c1], *b["center"]).json()["status"] == "accepted"  # a return visit
    assert world.checkin(headers[t1], *a["center"]).json()["reason"] == "too_frequent"
    assert world.checkin(headers[t3], *near(a["center"], 300)).json()["reason"] == "outside_geofence"
    assert world.checkin(headers[c2], *a["center"], mocked=True).json()["reason"] == "mocked_location"
    assert world.checkin(headers[c2], *a["center"], accuracy_m=500).json()["reason"] == "accuracy_too_low"
    assert world.checkin(headers[t3], *b["center"], observed_at=now - timedelta(hours=1)).json()["reason"] == "stale"
    redeemed = redeem(world, m.staff, codes[t1][0], a["id"]).json()
    voided = redeem(world, m.staff, codes[t2][0], b["id"]).json()
    assert (
        world.http.post(
            f"/v1/redemptions/{voided['id']}/void", json={"reason": "wrong till"}, headers=m.admin
        ).status_code
        == 200
    )
    again = redeem(world, m.staff, codes[t2][0], a["id"]).json()

    events = campaign_events(db, campaign["id"])
    by_type = {t: [e for e in events if e["type"] == t] for t in ALL_TYPES}
    venues = (a["id"], b["id"])
    checkins = db.execute(
        "SELECT * FROM checkins WHERE venue_id = ANY(%s::uuid[]) ORDER BY received_at", [list(venues)]
    ).fetchall()

    accepted = [c for c in checkins if c["status"] == "accepted"]
    rejected = [c for c in checkins if c["status"] == "rejected"]
    assert sorted(str(e["checkin_id"]) for e in by_type["checkin_accepted"]) == sorted(str(c["id"]) for c in accepted)
    assert sorted((str(e["checkin_id"]), e["reason"]) for e in by_type["checkin_rejected"]) == sorted(
        (str(c["id"]), c["reason"]) for c in rejected
    )
    assert {e["reason"] for e in by_type["checkin_rejected"]} == {
        "too_frequent",
        "outside_geofence",
        "mocked_location",
        "accuracy_too_low",
        "stale",
    }

    exposures = db.execute("SELECT * FROM exposures WHERE campaign_id = %s", [campaign["id"]]).fetchall()
    assert sorted((e["user_id"], e["arm"], e["data"]["bucket"]) for e in by_type["exposure"]) == sorted(
        (x["user_id"], x["arm"], x["bucket"]) for x in exposures
    )
    assert {e["arm"] for e in by_type["exposure"]} == {"treatment", "control"}
    assert {x["user_id"]: x["arm"] for x in exposures} == {t1: "treatment", t2: "treatment", c1: "control"}

    unlocks = db.execute("SELECT * FROM unlocks WHERE campaign_id = %s", [campaign["id"]]).fetchall()
    assert sorted((str(e["unlock_id"]), str(e["offer_id"]), e["user_id"]) for e in by_type["offer_unlocked"]) == sorted(
        (str(u["id"]), str(u["offer_id"]), u["user_id"]) for u in unlocks
    )

    redemptions = db.execute("SELECT * FROM redemptions WHERE campaign_id = %s", [campaign["id"]]).fetchall()
    assert (
        sorted(str(e["redemption_id"]) for e in by_type["offer_redeemed"])
        == sorted(str(r["id"]) for r in redemptions)
        == sorted([redeemed["id"], voided["id"], again["id"]])
    )
    assert [str(e["redemption_id"]) for e in by_type["redemption_voided"]] == [voided["id"]]
    assert by_type["redemption_voided"][0]["reason"] == "wrong till"
    assert [str(r["id"]) for r in redemptions if r["voided_at"] is not None] == [voided["id"]]

    for e in events:
        assert e["campaign_id"] and e["venue_id"] and e["user_id"] and e["occurred_at"], e
        if e["type"] in ("offer_unlocked", "offer_redeemed", "redemption_voided"):
            assert e["offer_id"] and e["unlock_id"], e
        if e["type"] in ("exposure", "checkin_accepted"):
            assert e["arm"] in ("treatment", "control"), e
    checkin_venues = {str(c["id"]): str(c["venue_id"]) for c in checkins}
    assert all(str(e["venue_id"]) == checkin_venues[str(e["checkin_id"])] for e in events if e["checkin_id"])
    redeemed_at = {str(r["id"]): str(r["venue_id"]) for r in redemptions}
    assert all(str(e["venue_id"]) == redeemed_at[str(e["redemption_id"])] for e in by_type["offer_redeemed"])


def test_checkins_outside_any_campaign_are_recorded_without_one(world, db):
    m = world.merchant()
    v = world.venue(m)
    user = f"user-{uuid.uuid4().hex[:12]}"

    world.checkin(world.user(user), *v["center"])
    world.checkin(world.user(user), *v["center"])

    events = db.execute(
        "SELECT type, campaign_id, reason, venue_id FROM events WHERE user_id = %s ORDER BY id", [user]
    ).fetchall()
    assert [(e["type"], e["campaign_id"], e["reason"]) for e in events] == [
        ("checkin_accepted", None, None),
        ("checkin_rejected", None, "too_frequent"),
    ]
    assert {str(e["venue_id"]) for e in events} == {v["id"]}


def test_failed_requests_add_no_events(world, db, scene, settings):
    m, a, _, campaign, (t1, t2, _), _ = scene
    code = world.checkin(world.user(t1), *a["center"]).json()["unlocked"][0]["code"]
    expiring = world.checkin(world.user(t2), *a["center"]).json()["unlocked"][0]
    redemption = redeem(world, m.staff, code, a["id"]).json()
    before = db.execute("SELECT count(*) AS n, max(id) AS last FROM events").fetchone()
    db.execute("UPDATE unlocks SET expires_at = now() - interval '1 second' WHERE id = %s", [expiring["unlock_id"]])

    failures = [
        redeem(world, m.staff, code, a["id"]),  # 409 already redeemed
        redeem(world, m.staff, expiring["code"], a["id"]),  # 410 expired
        redeem(world, m.staff, "ZZZZ-ZZZZ-ZZZZ", a["id"]),  # 404
        redeem(world, m.marketer, code, a["id"]),  # 403
        redeem(world, m.staff, code, str(uuid.uuid4())),  # 422 venue not in campaign
        world.http.post("/v1/redemptions/" + redemption["id"] + "/void", json={"reason": ""}, headers=m.admin),
        world.http.post(
            "/v1/checkins",
            json={"lat": 200, "lon": 0, "accuracy_m": 5, "observed_at": datetime.now(UTC).isoformat()},
            headers={**world.user(t1), "Idempotency-Key": str(uuid.uuid4())},
        ),
        world.http.post(
            "/v1/checkins",
            json={"lat": a["center"][1], "lon": a["center"][0], "accuracy_m": 5},
            headers={**world.user(t1), "Idempotency-Key": str(uuid.uuid4())},
        ),
    ]

    assert [r.status_code for r in failures] == [409, 410, 404, 403, 422, 422, 422, 422], [r.text for r in failures]
    assert db.execute("SELECT count(*) AS n, max(id) AS last FROM events").fetchone() == before


def test_retries_add_no_events(world, db, scene):
    m, a, _, campaign, (t1, _, _), _ = scene
    user = world.user(t1)
    key = str(uuid.uuid4())
    body = {
        "lat": a["center"][1],
        "lon": a["center"][0],
        "accuracy_m": 10,
        "observed_at": datetime.now(UTC).isoformat(),
    }
    first = world.http.post("/v1/checkins", json=body, headers={**user, "Idempotency-Key": key})
    after_first = len(campaign_events(db, campaign["id"]))

    replay = world.http.post("/v1/checkins", json=body, headers={**user, "Idempotency-Key": key})

    assert replay.status_code == 201 and replay.json() == first.json()
    assert len(campaign_events(db, campaign["id"])) == after_first == 3  # accepted, exposure, unlocked
    redeem_key = str(uuid.uuid4())
    code = first.json()["unlocked"][0]["code"]
    redeemed = [redeem(world, m.staff, code, a["id"], redeem_key) for _ in range(3)]
    assert [r.status_code for r in redeemed] == [201] * 3
    assert len(campaign_events(db, campaign["id"])) == after_first + 1


def _checkin_params(user: str, center: tuple[float, float], key: str | None) -> dict:
    return {"user": user, "key": key, "lon": center[0], "lat": center[1]}


CHECKIN_CALL = """
    SELECT checkin(p_user => %(user)s, p_idempotency_key => %(key)s, p_request_hash => 'hash',
                   p_lon => %(lon)s, p_lat => %(lat)s, p_accuracy_m => 10, p_observed_at => now(),
                   p_venue_id => NULL, p_device_id => NULL, p_mocked => false, p_reason => NULL, p_detail => NULL,
                   p_max_speed_kmh => 250, p_cooldown => interval '15 minutes')
"""


def test_events_share_the_transaction_of_the_checkin(world, db, scene):
    _, a, _, campaign, (t1, t2, _), _ = scene

    with db.transaction(force_rollback=True):
        db.execute(CHECKIN_CALL, _checkin_params(t1, a["center"], "k1"))
        assert {e["type"] for e in campaign_events(db, campaign["id"])} == {
            "checkin_accepted",
            "exposure",
            "offer_unlocked",
        }
    # A check-in that fails at its very last step (storing the idempotency key) leaves nothing behind.
    with pytest.raises(psycopg.errors.NotNullViolation):
        db.execute(CHECKIN_CALL, _checkin_params(t2, a["center"], None))

    assert campaign_events(db, campaign["id"]) == []
    assert db.execute("SELECT count(*) AS n FROM checkins WHERE user_id = ANY(%s)", [[t1, t2]]).fetchone()["n"] == 0
    assert (
        db.execute("SELECT count(*) AS n FROM campaign_counters WHERE campaign_id = %s", [campaign["id"]]).fetchone()[
            "n"
        ]
        == 0
    )


def test_events_share_the_transaction_of_the_redemption(world, db, scene):
    m, a, _, campaign, (t1, _, _), _ = scene
    unlock = world.checkin(world.user(t1), *a["center"]).json()["unlocked"][0]
    before = campaign_events(db, campaign["id"])

    # The last step (storing the idempotency key) fails: a NULL request hash.
    with pytest.raises(psycopg.errors.NotNullViolation):
        db.execute("SELECT redeem(%s, %s, %s, %s, %s, NULL)", [m.id, unlock["code"], a["id"], "staff-1", "k"])

    assert campaign_events(db, campaign["id"]) == before
    assert (
        db.execute("SELECT redeemed_at FROM unlocks WHERE id = %s", [unlock["unlock_id"]]).fetchone()["redeemed_at"]
        is None
    )
    assert (
        db.execute(
            "SELECT count(*) AS n FROM campaign_counters WHERE campaign_id = %s AND metric = 'redemption'",
            [campaign["id"]],
        ).fetchone()["n"]
        == 0
    )
    assert redeem(world, m.staff, unlock["code"], a["id"]).status_code == 201
